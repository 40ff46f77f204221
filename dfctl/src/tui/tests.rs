//! Rendering tests: recorded cluster states (from [`super::synthetic`], deterministic) drawn
//! through ratatui's `TestBackend`, compared with insta snapshots under `snapshots/`.

use df_core::api::LocalTask;
use df_core::telemetry::LogRecord;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, LocateState, Pane};
use super::draw::{self, piece_bar};
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
fn dag_of_200_peers_is_one_scrollable_row_per_node_roots_first() {
    let mut app = synthetic::app(synthetic::dag_cluster(200));
    app.pane = Pane::Dag;
    let task = app.view.task.clone().expect("the selected task's detail");
    assert_eq!(task.peers.len(), 200);
    let nodes = &task.flows.nodes;
    assert_eq!(nodes.len(), 201, "every peer has one row, plus the origin");
    assert_eq!(nodes[0].name, "origin", "the origin is the root");
    assert!(nodes[1].is_seed, "then the seed");
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n.links.iter().any(|l| l.blocklisted))
            .count(),
        2 * 11,
        "both ends of the 11 blocklisted edges are marked"
    );
    insta::assert_snapshot!("dag_200_top", screen(&app, 80, 24));
    // Scrolling to the end shows the last peers.
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.dag_cursor, 200);
    let bottom = screen(&app, 80, 24);
    insta::assert_snapshot!("dag_200_bottom", bottom);
    // Enter walks up the flow, one feeder at a time, to the origin.
    let mut walked = vec![app.dag_order()[app.dag_cursor]];
    for _ in 0..10 {
        key(&mut app, KeyCode::Enter);
        walked.push(app.dag_order()[app.dag_cursor]);
    }
    let names: Vec<&str> = walked.iter().map(|&n| nodes[n].name.as_str()).collect();
    assert_eq!(
        &names[..6],
        [
            "peer-197", "peer-64", "peer-19", "peer-4", "seed-1", "seed-0"
        ]
    );
    assert!(names[6..].iter().all(|n| *n == "origin"), "{names:?}");
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("── origin: got 0 B from 0, sent 256.0 MiB to 1"),
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

#[test]
fn dag_of_a_64_peer_mesh_fits_80x24_one_row_per_node() {
    let mut app = synthetic::app(synthetic::mesh_cluster(64));
    let task = app.view.task.clone().expect("the selected task's detail");
    assert_eq!(task.flows.nodes.len(), 65);
    key(&mut app, KeyCode::Char('2'));
    assert_eq!(app.pane, Pane::Dag);
    let text = screen(&app, 80, 24);
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[5].starts_with("origin "), "{text}");
    assert!(
        rows[6].starts_with("seed-0 [seed]  succeeded 100%"),
        "{text}"
    );
    assert!(text.contains("depth 5"), "{text}");
    insta::assert_snapshot!("dag_mesh_64", text);
    // By bytes sent: the origin and the seeds stay on top, then the busiest uploaders.
    key(&mut app, KeyCode::Char('s'));
    let order = app.dag_order();
    let nodes = &task.flows.nodes;
    assert_eq!(order[..2], [0, 1]);
    let sent: Vec<u64> = order[2..].iter().map(|&n| nodes[n].sent).collect();
    assert!(sent.windows(2).all(|w| w[0] >= w[1]), "{sent:?}");
    assert!(screen(&app, 80, 24).contains("s sort:sent"));
}

#[test]
fn dag_shows_both_directions_of_a_pair_that_feed_each_other() {
    let mut app = synthetic::app(synthetic::mesh_cluster(6));
    app.pane = Pane::Dag;
    let task = app.view.task.clone().expect("detail");
    // peer-1 and peer-2 (peers 3 and 4) are siblings: each sent the other pieces.
    let order = app.dag_order();
    let pos = order
        .iter()
        .position(|&n| task.flows.nodes[n].name == "peer-1")
        .expect("peer-1 has a row");
    for _ in 0..pos {
        key(&mut app, KeyCode::Char('j'));
    }
    let node = &task.flows.nodes[order[pos]];
    let pair = node
        .links
        .iter()
        .find(|l| l.name == "peer-2")
        .expect("the sibling link");
    assert!(pair.received > 0 && pair.sent > 0, "{pair:?}");
    let text = screen(&app, 80, 24);
    let cell = format!(
        "peer-2       ↓{:>9} ↑{:>9}",
        crate::render::bytes(pair.received),
        crate::render::bytes(pair.sent)
    );
    assert!(text.contains(&cell), "{cell}\n{text}");
    insta::assert_snapshot!("dag_bidirectional", text);
}
