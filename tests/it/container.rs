//! The project's image run as containers: `scripts/image` builds it from the binaries beside
//! this test, skopeo pushes it to the toolkit's registry, podman runs a scheduler, a seed and
//! two peers from it on the host network (as the chart does on a node), and containerd pulls
//! a test image through the peers with the `hosts.toml` from `dfctl gen-config containerd`.
//! The second peer's own log (`podman logs`, JSON) shows its blobs came from other peers.
//!
//! `podman run` in this sandbox: the process lacks CAP_SYS_RESOURCE, so runc may not set an
//! rlimit above the current hard limit. `--ulimit host` (runc then copies podman's defaults,
//! nofile 1048576) and limits equal to the hard limit both fail with EPERM (rlimit type 7 /
//! 6); limits below it work, hence the explicit `--ulimit` values.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::http_client;
use crate::e2e::{
    Containerd, Podman, Toolkit, assert_fetched_once, assert_holds, command, registry_of, run,
    served, served_since, teardown,
};

const PREFIX: &str = "df-e2e-ctr-";
/// Below this sandbox's hard limits (see the module doc).
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=16384:16384",
    "--ulimit",
    "nproc=4096:4096",
];

/// The containers this test started; removed however the test ends.
struct Containers {
    podman: Podman,
    names: Vec<String>,
}

impl Containers {
    async fn run(&mut self, name: &str, image: &str, config: &Path, argv: &[&str]) {
        let name = format!("{PREFIX}{name}");
        let target = format!("/etc/dragonfly/{}.yaml", argv[0]);
        let mut c = self.podman.podman();
        c.args(["run", "-d", "--name", &name, "--network", "host"])
            .args(ULIMITS)
            .arg("-v")
            .arg(format!("{}:{target}:ro", config.display()))
            .arg(image)
            .args(argv)
            .args(["--config", &target]);
        self.names.push(name);
        run(c).await.ok();
    }

    async fn logs(&self, name: &str) -> String {
        let mut c = self.podman.podman();
        c.args(["logs", &format!("{PREFIX}{name}")]);
        let out = run(c).await.ok();
        format!("{}{}", out.stdout, out.stderr)
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.names {
            let mut c = self.podman.podman();
            c.args(["rm", "-f", "-t", "2", name]);
            teardown(c);
        }
    }
}

async fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(
            tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind"),
        );
    }
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

async fn wait_healthy(admin: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{admin}/healthz");
    loop {
        if http_client()
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what} not healthy at {url}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn write_config(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("config");
    // The containers run as the image's user 65532.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    path
}

/// The `download finished` lines of a peer's JSON log.
fn finished_downloads(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.to_string().contains("download finished"))
        .collect()
}

fn field(v: &Value, key: &str) -> u64 {
    v.get(key)
        .or_else(|| v.get("fields").and_then(|f| f.get(key)))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_a_podman_cluster_that_containerd_pulls_through_p2p() {
    const NS: &str = "df-e2e-containers";
    let toolkit = Toolkit::up().await;
    let test_image = toolkit
        .push(
            "e2e/in-containers",
            "t1",
            "1M,24M,16K",
            "e2e-podman-run-cluster",
        )
        .await;
    let registry = registry_of(&test_image.refs.http).to_owned();
    let work = tempfile::tempdir().expect("tempdir");

    // Our image, built and pushed by the project's script.
    let ours = format!("{registry}/dragonfly-lite/dragonfly-lite:e2e");
    let mut c = command(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/image"));
    c.arg("--bin-dir")
        .arg(crate::cli::bin("dfctl").parent().expect("bin dir"))
        .arg("--out")
        .arg(work.path().join("oci"))
        .args(["--tag", "e2e", "--push", &format!("docker://{ours}")])
        .env("SKOPEO_FLAGS", "--dest-tls-verify=false");
    run(c).await.ok();

    let mut containers = Containers {
        podman: Podman::direct().await,
        names: Vec::new(),
    };
    let ports = free_ports(2 + 3 * 3).await;
    let addr = |i: usize| SocketAddr::from((Ipv4Addr::LOCALHOST, ports[i]));
    let (grpc, http) = (addr(0), addr(1));
    let sched = write_config(
        work.path(),
        "scheduler",
        &format!(
            "server:\n  grpc_addr: \"{grpc}\"\n  http_addr: \"{http}\"\nlog:\n  stderr: json\n\
             tls:\n  plaintext: true\n"
        ),
    );
    containers
        .run("scheduler", &ours, &sched, &["dfscheduler"])
        .await;
    wait_healthy(http, "the scheduler").await;
    let mut proxies = Vec::new();
    for (n, name) in ["seed", "peer-0", "peer-1"].iter().enumerate() {
        let (upload, proxy, admin) = (addr(2 + 3 * n), addr(3 + 3 * n), addr(4 + 3 * n));
        let config = format!(
            "seed: {seed}\nhost:\n  hostname: {name}\n  ip: 127.0.0.1\nschedulers: [\"{grpc}\"]\n\
             server:\n  upload_addr: \"{upload}\"\n  proxy_addr: \"{proxy}\"\n  admin_addr: \"{admin}\"\n\
             proxy:\n  allow_private_destinations: true\n  destination_ports: []\n\
             log:\n  stderr: json\ntls:\n  plaintext: true\n",
            seed = n == 0,
        );
        let path = write_config(work.path(), name, &config);
        containers.run(name, &ours, &path, &["dfdaemon"]).await;
        wait_healthy(admin, name).await;
        proxies.push(proxy);
    }

    let server = format!("http://{registry}");
    let mut containerd = Containerd::up().await;
    let blobs = test_image.blobs();
    let want = test_image.digests();
    let before = served(&blobs, "http").await;
    for (i, proxy) in proxies[1..].iter().enumerate() {
        containerd.mirror_with_dfctl(&server, *proxy).await;
        containerd.clean().await;
        containerd.fetch(NS, &test_image.refs.http).await.ok();
        assert_holds(
            &containerd.content(NS).await,
            &want,
            &format!("through peer-{i}"),
        );
    }
    let delta = served_since(&blobs, "http", &before).await;
    assert_fetched_once(
        &blobs,
        &delta,
        "2 containerd pulls through containerised peers",
    );

    // peer-1's own log: every blob it fetched came from the seed or peer-0, none from the
    // registry.
    // The blobs have distinct sizes, so each line is matched by its byte count.
    let log = containers.logs("peer-1").await;
    let finished = finished_downloads(&log);
    for b in &blobs {
        let line = finished
            .iter()
            .find(|l| field(l, "bytes") == b.size)
            .unwrap_or_else(|| panic!("no download of {} in peer-1's log:\n{log}", b.digest));
        eprintln!("[e2e] peer-1: {line}");
        assert_eq!(field(line, "from_origin"), 0, "{line}");
        assert!(
            field(line, "from_peers") + field(line, "from_seeds") == field(line, "bytes"),
            "{line}"
        );
    }
}
