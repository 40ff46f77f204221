//! An upload slot lasts until the child has the piece, not until its last byte is handed to
//! the socket (`df_peer`'s `send_queue`): on a real link the kernel holds up to a whole piece
//! in flight and unsent, and a slot freed at the last write let a second upload share a busy
//! uplink (README "Slots that end on delivery").

use std::sync::Arc;
use std::time::Duration;

use df_tests::origin::{OriginConfig, OriginHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::cluster::{Cluster, piece_client, piece_tls, pulled};

/// A one-piece object small enough that its whole body is written while a child that does not
/// read holds most of it unacknowledged: 64 KiB unsent (`TCP_NOTSENT_LOWAT`) plus what its 4 KiB
/// receive window took.
const SIZE: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_stays_taken_until_the_child_has_read_the_piece() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 0, 1, &|_, c| c.upload_slots = 1).await;
    let peer = &cluster.peers[0];
    let task = pulled(peer, &origin, SIZE, 31).await;

    let client = piece_client(&cluster);
    let get = || async {
        client
            .get(format!("https://{}/pieces/{task}/0", peer.data))
            .send()
            .await
            .expect("piece")
            .status()
    };

    // A child that asks for the piece and then reads nothing: its receive buffer is 4 KiB.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(peer.data).await.expect("connect");
    let name = rustls_pki_types::ServerName::IpAddress(peer.data.ip().into());
    let mut slow = tokio_rustls::TlsConnector::from(Arc::new(piece_tls(&cluster, "slow")))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let request = format!(
        "GET /pieces/{task}/0 HTTP/1.1\r\nhost: {}\r\n\r\n",
        peer.data
    );
    slow.write_all(request.as_bytes()).await.expect("request");
    // The parent writes the body after this, so its 2 s hold ends after `asked` + 2 s.
    let asked = tokio::time::Instant::now();
    // Long enough for the parent to write the whole body (it is that small).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get().await,
        503,
        "the body is written but the child has not read it: the one slot is still taken"
    );

    // The child reads the piece; its slot frees once the bytes are acknowledged.
    let mut body = vec![0u8; 1024 * 1024];
    let mut read = 0;
    while read < SIZE as usize {
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut body[read..]))
            .await
            .expect("the piece arrives")
            .expect("read");
        assert!(n > 0, "the parent closed before the piece");
        read += n;
    }
    // Before the hold's end (`MAX_HOLD`, 2 s after the last write, which was after `asked`),
    // so it is the delivery that frees the slot, not the hold running out.
    let mut status = get().await;
    while status != 200 && asked.elapsed() < Duration::from_millis(1500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = get().await;
    }
    assert_eq!(
        status, 200,
        "the piece was read: the slot is free well before the 2 s hold ends"
    );
}
