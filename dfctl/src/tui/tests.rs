//! Rendering tests: recorded cluster states (from [`super::synthetic`], deterministic) drawn
//! through ratatui's `TestBackend`, compared with insta snapshots under `snapshots/`.

use std::collections::HashSet;

use df_core::api::LocalTask;
use df_core::telemetry::LogRecord;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, LocateState, Pane};
use super::draw::{self, dag_lines, piece_bar};
use super::feed::{Event, LogLine};
use super::synthetic::{self, t0};
use crate::location::{Location, NodeCopy};

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|frame| draw::draw(frame, app))
        .expect("draws");
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        for x in 0..buffer.area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key(app: &mut App, code: KeyCode) {
    app.handle(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)), t0());
}

#[test]
fn empty_cluster_tasks_pane() {
    let app = synthetic::app(synthetic::empty_cluster());
    let text = screen(&app, 80, 24);
    assert!(text.contains("no tasks yet"), "{text}");
    insta::assert_snapshot!("empty_tasks", text);
}

#[test]
fn busy_cluster_tasks_pane_at_80x24() {
    let app = synthetic::app(synthetic::busy_cluster(40, 30, 2));
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("schedulers 2/2 up  tasks 40  hosts 30"),
        "{text}"
    );
    insta::assert_snapshot!("busy_tasks", text);
}

#[test]
fn disconnected_scheduler_is_shown_as_such() {
    let app = synthetic::app(synthetic::half_down_cluster());
    let text = screen(&app, 80, 24);
    assert!(text.contains("schedulers 1/2 up"), "{text}");
    assert!(
        text.contains("✗ scheduler 10.0.9.2:8080 disconnected, retry in 4s"),
        "{text}"
    );
    insta::assert_snapshot!("disconnected_tasks", text);
}

#[test]
fn dag_of_200_peers_is_a_scrollable_collapsible_tree() {
    let mut app = synthetic::app(synthetic::dag_cluster(200));
    app.pane = Pane::Dag;
    let task = app.view.task.clone().expect("the selected task's detail");
    assert_eq!(task.peers.len(), 200);
    let lines = dag_lines(&task, &HashSet::new());
    assert_eq!(lines.len(), 200, "every peer has one line");
    assert!(task.peers[lines[0].peer].is_seed, "the seed is the root");
    assert!(
        lines.iter().filter(|l| !l.blocked.is_empty()).count() >= 10,
        "blocklisted parents are marked"
    );
    insta::assert_snapshot!("dag_200_top", screen(&app, 80, 24));
    // Scrolling to the end shows the last peers.
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.dag_cursor, 199);
    let bottom = screen(&app, 80, 24);
    insta::assert_snapshot!("dag_200_bottom", bottom);
    // Collapsing the seed hides everything under it.
    key(&mut app, KeyCode::Char('g'));
    key(&mut app, KeyCode::Enter);
    let collapsed = dag_lines(&task, &app.collapsed);
    assert_eq!(collapsed.len(), 1, "only the seed is left");
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("▸(+3) seed-0 [seed] succeeded 100%"),
        "{text}"
    );
}

#[test]
fn pieces_pane_draws_each_peers_bitmap() {
    let mut app = synthetic::app(synthetic::dag_cluster(200));
    app.pane = Pane::Pieces;
    insta::assert_snapshot!("pieces_200", screen(&app, 80, 24));
    assert_eq!(piece_bar("ff00", 16, 4), "██··");
    assert_eq!(piece_bar("0f00", 16, 4), "█···");
    assert_eq!(piece_bar("0300", 16, 4), "▓···");
    assert_eq!(piece_bar("0100", 16, 4), "░···");
    assert_eq!(piece_bar("01", 2, 10), "█·", "never more cells than pieces");
}

#[test]
fn hosts_pane_shows_load_disk_and_state() {
    let mut app = synthetic::app(synthetic::busy_cluster(3, 40, 1));
    app.pane = Pane::Hosts;
    let text = screen(&app, 80, 24);
    assert!(text.contains("disabled"), "{text}");
    assert!(text.contains("evicting"), "{text}");
    assert!(text.contains("gone"), "{text}");
    insta::assert_snapshot!("hosts", text);
}

#[test]
fn locate_pane_shows_paths_and_collection() {
    let mut app = synthetic::app(synthetic::dag_cluster(3));
    app.pane = Pane::Locate;
    app.locate_query = "layer-0".into();
    let detail = synthetic::detail(0, 3, 2);
    let id = detail.summary.task_id.parse().expect("task id");
    let mut loc = Location::merge(&id, vec![("10.0.9.1:8080".into(), detail)]).expect("found");
    loc.copies = loc
        .peers
        .iter()
        .enumerate()
        .map(|(i, p)| NodeCopy {
            peer_id: p.peer_id.clone(),
            host_id: p.host_id.clone(),
            admin_addr: format!("{}:{}", p.ip, p.admin_port),
            local: (i < 2).then(|| LocalTask {
                task_id: loc.task_id.clone(),
                url: loc.url.clone(),
                content_length: loc.content_length,
                piece_length: Some(4 << 20),
                piece_count: synthetic::PIECES,
                finished_pieces: p.finished_pieces,
                complete: p.finished_pieces == synthetic::PIECES,
                content_path: p.content_path.clone(),
                bytes_from_origin: 0,
                bytes_from_peers: 0,
                bytes_from_seeds: 0,
                uploaded_bytes: 0,
                source: None,
                last_access_secs_ago: 60,
                expires_in_secs: (i == 0).then_some(86_340),
                evictable: true,
            }),
            error: (i >= 2).then(|| "GET http://10.0.0.3:4002/api/v1/tasks: timed out".into()),
        })
        .collect();
    app.handle(Event::Located(Ok(Box::new(loc))), t0());
    let text = screen(&app, 80, 24);
    assert!(text.contains("TTL 23h59m, or LRU"), "{text}");
    assert!(text.contains("kept: in use"), "{text}");
    insta::assert_snapshot!("locate", text);
    app.handle(Event::Located(Err("task x is not known".into())), t0());
    assert!(matches!(app.locate, LocateState::Failed(_)));
}

fn log(i: usize, task: Option<&str>) -> LogLine {
    LogLine {
        source: if i.is_multiple_of(2) {
            "10.0.9.1:8080"
        } else {
            "10.0.0.3:4002"
        }
        .into(),
        record: LogRecord {
            ts: format!("2026-11-22T08:00:{:02}.000Z", i % 60),
            level: if i % 7 == 3 { "WARN" } else { "INFO" }.into(),
            component: if i.is_multiple_of(2) {
                "dfscheduler"
            } else {
                "dfdaemon"
            }
            .into(),
            target: "df".into(),
            message: format!("piece {i} finished from a parent after a long wait for the slot"),
            task_id: task.map(str::to_owned),
            peer_id: None,
            fields: Default::default(),
        },
    }
}

#[test]
fn logs_pane_follows_pauses_wraps_and_filters_by_task() {
    let mut app = synthetic::app(synthetic::dag_cluster(3));
    let task = app.selected_task.clone().expect("selected");
    for i in 0..40usize {
        let t = i.is_multiple_of(3).then_some(task.as_str());
        app.handle(Event::Log(log(i, t)), t0());
    }
    app.pane = Pane::Logs;
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("piece 39 finished"),
        "following shows the newest: {text}"
    );
    insta::assert_snapshot!("logs_follow", text);
    // Pause, then new lines do not move the screen.
    key(&mut app, KeyCode::Char('f'));
    app.handle(Event::Log(log(40, None)), t0());
    let text = screen(&app, 80, 24);
    assert!(!text.contains("piece 40 "), "{text}");
    assert!(text.contains("piece 39 "), "{text}");
    // Only the selected task's lines.
    key(&mut app, KeyCode::Char('f'));
    key(&mut app, KeyCode::Char('t'));
    assert!(
        app.visible_logs()
            .iter()
            .all(|l| l.record.task_id.as_deref() == Some(task.as_str()))
    );
    // Logs name the daemon (peers all log as `dfdaemon`), and `/` filters by that name.
    app.filter = "peer-0".into();
    let lines = app.visible_logs();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l.source == "10.0.0.3:4002"));
    app.filter.clear();
    key(&mut app, KeyCode::Char('w'));
    insta::assert_snapshot!("logs_task_wrapped", screen(&app, 80, 24));
}

#[test]
fn help_overlay_lists_the_keys() {
    let mut app = synthetic::app(synthetic::busy_cluster(5, 5, 1));
    key(&mut app, KeyCode::Char('?'));
    let text = screen(&app, 80, 24);
    assert!(text.contains("q, Ctrl-C  quit"), "{text}");
    insta::assert_snapshot!("help", text);
}

#[test]
fn no_color_means_no_colour_in_any_cell() {
    let coloured = |no_color: bool| {
        let mut app = synthetic::app(synthetic::half_down_cluster());
        app.no_color = no_color;
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        terminal.draw(|f| draw::draw(f, &app)).expect("draws");
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| {
                c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset
            })
            .count()
    };
    assert!(coloured(false) > 0, "colour marks state normally");
    assert_eq!(coloured(true), 0, "NO_COLOR: no colour at all");
}

#[test]
fn a_layer_digest_or_url_fragment_resolves_to_its_task() {
    let app = synthetic::app(synthetic::busy_cluster(12, 5, 1));
    let want = synthetic::task_id(11);
    let id = super::resolve_query("layer-11/", &app.view).expect("one match");
    assert_eq!(id.as_str(), want);
    let digest = synthetic::url(11)
        .rsplit_once("sha256:")
        .expect("digest")
        .1
        .to_owned();
    let id = super::resolve_query(&format!("sha256:{digest}"), &app.view).expect("digest");
    assert_eq!(id.as_str(), want);
    assert!(
        super::resolve_query("layer-1", &app.view).is_err(),
        "ambiguous"
    );
    assert!(super::resolve_query("nothing-like-it", &app.view).is_err());
    let id = super::resolve_query(&synthetic::url(3), &app.view).expect("a URL");
    assert_eq!(id.as_str(), synthetic::task_id(3));
}
