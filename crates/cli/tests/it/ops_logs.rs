//! The server's log as operators read it: one line per request (no secrets), plain text off a
//! terminal, JSON on request, and a second interrupt that stops at once.

use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::Value;

use crate::auth_support::{Cred, call};
use crate::harness::{OWNER_PASSWORD, Server};

/// Waits until the stderr log holds a line satisfying `f` (request lines are written when the
/// response body is done, just after the client has it).
fn wait_for_line(srv: &Server, f: impl Fn(&str) -> bool) -> String {
    for _ in 0..100 {
        if let Some(l) = srv.stderr_log().lines().find(|l| f(l)) {
            return l.to_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no such line in the log\n{}", srv.stderr_log());
}

#[tokio::test(flavor = "multi_thread")]
async fn ops_request_lines_name_the_caller_and_hide_secrets() {
    let srv = Server::start_with_auth();
    call(&srv, Method::GET, "/v2/", &Cred::owner(), &[], None)
        .await
        .expect(200);
    // A query string is never logged (clients put tokens and passwords in some).
    call(
        &srv,
        Method::GET,
        "/v2/team/app/tags/list?n=1&token=sekrit-query-value",
        &Cred::owner(),
        &[],
        None,
    )
    .await
    .expect(404);
    call(&srv, Method::GET, "/v2/", &Cred::None, &[], None)
        .await
        .expect(401);
    let line = wait_for_line(&srv, |l| {
        l.contains("path=/v2/ ") && l.contains("status=200")
    });
    for part in [
        "method=GET",
        "status=200",
        "identity=owner",
        "bytes=2",
        "duration_ms=",
    ] {
        assert!(line.contains(part), "{part} missing in {line:?}");
    }
    let tags = wait_for_line(&srv, |l| l.contains("path=/v2/team/app/tags/list"));
    assert!(tags.contains("status=404"), "{tags}");
    let anon = wait_for_line(&srv, |l| l.contains("status=401"));
    assert!(anon.contains("identity=anonymous"), "{anon}");
    let log = srv.stderr_log();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("owner:{OWNER_PASSWORD}"));
    for secret in [
        "sekrit-query-value",
        OWNER_PASSWORD,
        basic.as_str(),
        "token=",
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    // stderr is a file here: no colour codes.
    assert!(!log.contains('\u{1b}'), "ANSI escapes in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ops_json_log_format() {
    let srv = Server::start_with_auth_env(&[("BERTH_LOG_FORMAT", "json")]);
    call(&srv, Method::GET, "/v2/", &Cred::owner(), &[], None)
        .await
        .expect(200);
    let line = wait_for_line(&srv, |l| l.contains("\"path\":\"/v2/\""));
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["fields"]["method"], "GET", "{v}");
    assert_eq!(v["fields"]["status"], 200, "{v}");
    assert_eq!(v["fields"]["identity"], "owner", "{v}");
    // Every log record is one JSON object (the start-up hints for people are plain eprintln).
    let records = srv
        .stderr_log()
        .lines()
        .filter(|l| l.contains("\"level\""))
        .count();
    assert!(records >= 2, "{}", srv.stderr_log());
    for l in srv.stderr_log().lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[test]
fn ops_bad_log_format_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env("BERTH_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BERTH_LOG_FORMAT") && err.contains("json"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ops_second_interrupt_stops_at_once_and_says_what_it_cut() {
    let mut srv = Server::start_with_auth();
    let client = srv.new_client();
    let loc = {
        let r = call(
            &srv,
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            &Cred::owner(),
            &[],
            None,
        )
        .await;
        r.expect(202);
        r.must_header("location")
    };
    // An upload that sends one chunk and then holds the request open.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(vec![7u8; 1024])).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let url = srv.url(&loc);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("owner:{OWNER_PASSWORD}"))
    );
    let upload = tokio::spawn(async move {
        client
            .patch(url)
            .header("authorization", auth)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
    });
    // Until the server sees the request in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    srv.signal("INT");
    wait_for_line(&srv, |l| l.contains("interrupt again to stop at once"));
    // The first interrupt waits for the upload (up to its grace time) ...
    assert!(srv.wait_exit(Duration::from_millis(700)).is_none());
    srv.signal("INT");
    // ... the second does not.
    let status = srv
        .wait_exit(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("still running after a second SIGINT\n{}", srv.logs()));
    assert_eq!(status.code(), Some(130), "{}", srv.logs());
    let cut = wait_for_line(&srv, |l| l.contains("second interrupt"));
    assert!(cut.contains("cutting 1 request(s) in flight"), "{cut}");
    drop(tx);
    let _ = upload.await;
}

/// A stream of the channel's items (what `reqwest::Body::wrap_stream` takes).
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Without --data-dir a service uses systemd's state directory (and says where), and a service
/// with neither refuses to start instead of filling its working directory.
#[test]
fn ops_data_dir_defaults_to_the_state_directory_for_a_service() {
    use std::io::BufRead;
    let cwd = tempfile::tempdir().unwrap();
    let state = cwd.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .env("STATE_DIRECTORY", &state)
        .env("INVOCATION_ID", "0123456789abcdef")
        .env("BERTH_BOOTSTRAP_PASSWORD", OWNER_PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(cwd.path().join("err.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(cwd.path().join("err.log")).unwrap();
        if log.contains("berth serving") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening on https://"), "{line}");
    assert!(state.join("metadata.db").exists());
    assert!(!cwd.path().join("berth-data").exists());
    let abs = std::fs::canonicalize(&state).unwrap();
    assert!(
        log.contains(&format!("data_dir={}", abs.display())),
        "{log}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .env_remove("STATE_DIRECTORY")
        .env("INVOCATION_ID", "0123456789abcdef")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("StateDirectory=berth"), "{err}");
    assert!(!cwd.path().join("berth-data").exists());
}
