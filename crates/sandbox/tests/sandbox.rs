//! End-to-end tests of the local provider with real sandboxes (root required).
//!
//! Network probes only ever target 127.0.0.1 and the veth addresses of namespaces these tests
//! created themselves.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use forgeai_preview::{PreviewConfig, PreviewProxy};
use forgeai_sandbox::local::Limits;
use forgeai_sandbox::{
    CommandOptions, CreateOptions, EntryKind, Error, LocalConfig, LocalProvider, SandboxProvider, SandboxStatus, Stream,
};

fn secret() -> String {
    format!("secret-{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_as_user_in_project_with_node_and_streamed_output() {
    let env = Env::new().await;
    let id = env.create().await;

    let r = env
        .run(
            &id,
            "id -u; id -gn; pwd; echo $HOME; node -e 'console.log(6*7)'; npm --version >/dev/null && echo npm-ok",
        )
        .await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        &lines[..6],
        &["1000", "user", "/home/user/project", "/home/user", "42", "npm-ok"],
        "{r:?}"
    );

    // Non-zero exit codes are results, not errors.
    let r = env.run(&id, "echo oops >&2; exit 7").await;
    assert_eq!((r.exit_code, r.stderr.as_str()), (7, "oops\n"));

    // env + cwd.
    env.provider.write_file(&id, "sub/dir/keep", b"").await.unwrap();
    let r = env
        .provider
        .run_command(
            &id,
            "pwd; echo $FOO",
            CommandOptions::default().with_cwd("sub/dir").with_env("FOO", "bar"),
        )
        .await
        .unwrap();
    assert_eq!(r.stdout, "/home/user/project/sub/dir\nbar\n");

    // Output arrives while the command still runs.
    let seen: Arc<Mutex<Vec<(Instant, Stream, String)>>> = Arc::default();
    let seen2 = seen.clone();
    let opts = CommandOptions::default()
        .on_output(move |c| seen2.lock().unwrap().push((Instant::now(), c.stream, c.data.clone())));
    let r = env
        .provider
        .run_command(&id, "echo start; echo err >&2; sleep 1; echo end", opts)
        .await
        .unwrap();
    let done = Instant::now();
    assert_eq!(r.stdout, "start\nend\n");
    let seen = seen.lock().unwrap();
    let first = seen
        .iter()
        .find(|(_, s, d)| *s == Stream::Stdout && d.contains("start"))
        .expect("start chunk");
    assert!(
        done.duration_since(first.0) > Duration::from_millis(500),
        "start was not streamed early"
    );
    assert!(seen.iter().any(|(_, s, d)| *s == Stream::Stderr && d == "err\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_cannot_see_host_files() {
    let env = Env::new().await;
    let id = env.create().await;
    let s = secret();
    let name = format!("forgeai-host-{:x}", rand_u64());
    let tmp_file = std::env::temp_dir().join(&name);
    std::fs::write(&tmp_file, &s).unwrap();
    let root_file = std::path::PathBuf::from(format!("/root/{name}"));
    std::fs::write(&root_file, &s).unwrap();
    let data_dir = env.dir.path().display().to_string();

    let script = format!(
        "cat {tmp} 2>&1; cat {root} 2>&1; ls -A /tmp; ls /root 2>&1; ls {data_dir} 2>&1; cat /etc/shadow 2>&1; \
         touch /usr/x 2>&1; touch /etc/x 2>&1; touch /x 2>&1; ls /home; echo done",
        tmp = tmp_file.display(),
        root = root_file.display()
    );
    let r = env.run(&id, &script).await;
    let _ = std::fs::remove_file(&tmp_file);
    let _ = std::fs::remove_file(&root_file);
    assert!(!r.stdout.contains(&s), "sandbox read a host secret: {r:?}");
    assert!(r.stdout.contains("done"), "{r:?}");
    assert!(
        r.stdout.contains("Read-only file system"),
        "system dirs must be read-only: {r:?}"
    );
    // The only thing in /home is the sandbox user's home.
    assert!(r.stdout.lines().any(|l| l == "user"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_cannot_reach_host_services() {
    let env = Env::new().await;
    let id = env.create().await;
    let (host_addr, _) = env.provider.network(&id).await.expect("network");
    // One listener only on loopback, one on all addresses (reachable through the host's veth
    // end if the firewall did not drop it).
    let lo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let any = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let (lo_port, any_port) = (lo.local_addr().unwrap().port(), any.local_addr().unwrap().port());
    let script = format!(
        "probe() {{ if timeout 3 bash -c \"exec 3<>/dev/tcp/$1/$2\" 2>/dev/null; then echo \"$1 OPEN\"; else echo \"$1 closed\"; fi; }}; \
         probe 127.0.0.1 {lo_port}; probe {host_addr} {any_port}; probe {host_addr} {lo_port}"
    );
    let r = env.run(&id, &script).await;
    assert!(!r.stdout.contains("OPEN"), "sandbox reached the host: {r:?}");
    assert_eq!(r.stdout.matches("closed").count(), 3, "{r:?}");
    for l in [&lo, &any] {
        assert!(
            tokio::time::timeout(Duration::from_millis(200), l.accept())
                .await
                .is_err(),
            "host listener got a connection"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_the_package_registry() {
    let env = Env::new().await;
    let id = env.create().await;
    // The one kind of outside traffic sandboxes exist for: installing packages.
    let r = env
        .run(&id, "npm view is-number@7.0.0 version --no-update-notifier")
        .await;
    assert_eq!((r.exit_code, r.stdout.trim()), (0, "7.0.0"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_cannot_see_each_other() {
    let env = Env::new().await;
    let a = env.create().await;
    let b = env.create().await;
    let s = secret();
    env.provider.write_file(&a, "secret.txt", s.as_bytes()).await.unwrap();
    let (_, a_addr) = env.provider.network(&a).await.unwrap();
    // Host -> sandbox works (that is how the preview proxy reaches the dev server)...
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect((a_addr, 3000)).await.is_ok()
        })
        .await,
        "host cannot reach sandbox a's dev server"
    );
    // ...sandbox -> sandbox does not.
    let script = format!(
        "cat /home/user/project/secret.txt 2>&1; grep -rs {s} /home /tmp 2>/dev/null | head -1; \
         ps -e -o comm=; if timeout 3 bash -c 'exec 3<>/dev/tcp/{a_addr}/3000' 2>/dev/null; then echo A-OPEN; else echo a-closed; fi"
    );
    let r = env.run(&b, &script).await;
    assert!(!r.stdout.contains(&s), "b saw a's file: {r:?}");
    assert!(r.stdout.contains("No such file"), "{r:?}");
    assert!(
        !r.stdout.lines().any(|l| matches!(l.trim(), "node" | "busybox")),
        "b saw a dev server process: {r:?}"
    );
    assert!(r.stdout.contains("a-closed"), "b reached a over the network: {r:?}");
    // And a still has its file.
    assert_eq!(env.provider.read_file(&a, "secret.txt").await.unwrap(), s.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_is_contained() {
    let env = Env::with(|c| {
        c.limits = Limits {
            memory_bytes: Some(256 << 20),
            pids: Some(64),
            cpu_cores: Some(0.5),
            cpu_shares: None,
        }
    })
    .await;
    let id = env.create().await;
    let started = Instant::now();
    let res = env
        .provider
        .run_command(
            &id,
            "f(){ f | f & }; f; sleep 30",
            CommandOptions::default().with_timeout(Duration::from_secs(3)),
        )
        .await;
    assert!(matches!(res, Err(Error::CommandTimeout { .. }) | Ok(_)), "{res:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "fork bomb was not stopped in time"
    );
    // The host can still start processes.
    let host = std::process::Command::new("true").status().expect("host can spawn");
    assert!(host.success());
    // The bomb's processes are gone and the sandbox works again.
    let provider = env.provider.clone();
    let id2 = id.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let (p, i) = (provider.clone(), id2.clone());
            async move { p.pids(&i).await.map(|v| v.len() < 10).unwrap_or(false) }
        })
        .await,
        "bomb processes survived: {:?}",
        env.provider.pids(&id).await
    );
    let r = env.run(&id, "echo alive").await;
    assert_eq!(r.stdout, "alive\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_contained() {
    let env = Env::with(|c| {
        c.limits = Limits {
            memory_bytes: Some(160 << 20),
            pids: Some(128),
            cpu_cores: None,
            cpu_shares: None,
        }
    })
    .await;
    let id = env.create().await;
    let r = env
        .provider
        .run_command(
            &id,
            "node -e 'const a=[]; for(;;) a.push(Buffer.alloc(1<<20, 1))'",
            CommandOptions::default().with_timeout(Duration::from_secs(60)),
        )
        .await
        .expect("hog ends by itself");
    assert_ne!(r.exit_code, 0, "the hog cannot succeed: {r:?}");
    assert!(
        env.provider.oom_kills(&id).await.unwrap() > 0,
        "the memory limit never killed anything: {r:?}"
    );
    let r = env.run(&id, "echo alive").await;
    assert_eq!(r.stdout, "alive\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_past_timeout_is_killed_with_its_tree() {
    let env = Env::new().await;
    let id = env.create().await;
    // Let the dev server settle so the baseline process count is stable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = env.provider.pids(&id).await.unwrap().len();
    let started = Instant::now();
    let res = env
        .provider
        .run_command(
            &id,
            "sleep 100 & (setsid sleep 100 &); echo before; sleep 100",
            CommandOptions::default().with_timeout(Duration::from_secs(1)),
        )
        .await;
    let took = started.elapsed();
    match res {
        Err(Error::CommandTimeout { after, stdout, .. }) => {
            assert_eq!(after, Duration::from_secs(1));
            assert_eq!(stdout, "before\n");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "timeout took {took:?}");
    let provider = env.provider.clone();
    let id2 = id.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let (p, i) = (provider.clone(), id2.clone());
            async move { p.pids(&i).await.map(|v| v.len() <= baseline).unwrap_or(false) }
        })
        .await,
        "processes of the timed-out command survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_api_refuses_path_escapes() {
    let env = Env::new().await;
    let id = env.create().await;
    let p = &env.provider;
    for path in ["../x", "a/../../x", "/etc/passwd", "/home/user/.bashrc", "/tmp/x"] {
        assert!(
            matches!(p.write_file(&id, path, b"x").await, Err(Error::PathEscape { .. })),
            "write {path}"
        );
        assert!(
            matches!(p.read_file(&id, path).await, Err(Error::PathEscape { .. })),
            "read {path}"
        );
    }
    let r = env.run(&id, "mkdir -p real && echo inside > real/f && ln -s /etc etc-link && ln -s ../.. up && ln -s real ok && ln -s /home/user/project/real abs-inside").await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    for path in ["etc-link/passwd", "up/etc/passwd", "abs-inside/f"] {
        assert!(
            matches!(p.read_file(&id, path).await, Err(Error::PathEscape { .. })),
            "read {path}"
        );
    }
    assert!(matches!(
        p.write_file(&id, "up/evil", b"x").await,
        Err(Error::PathEscape { .. })
    ));
    assert!(matches!(
        p.write_file(&id, "etc-link/new/evil", b"x").await,
        Err(Error::PathEscape { .. })
    ));
    assert!(matches!(
        p.list_files(&id, "etc-link", 1).await,
        Err(Error::PathEscape { .. })
    ));
    // Links that stay inside work.
    assert_eq!(p.read_file(&id, "ok/f").await.unwrap(), b"inside\n");
    p.write_file(&id, "ok/g", b"via link").await.unwrap();
    assert_eq!(env.run(&id, "cat real/g").await.stdout, "via link");
    // Files written through the API belong to the sandbox user.
    assert_eq!(env.run(&id, "stat -c %U real/g").await.stdout, "user\n");
    assert!(matches!(
        p.read_file(&id, "missing.txt").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_roundtrip_and_list() {
    let env = Env::new().await;
    let id = env.create().await;
    let p = &env.provider;
    p.write_file(&id, "app/page.tsx", b"export default 1").await.unwrap();
    p.write_file(&id, "/home/user/project/app/lib/util.ts", b"x")
        .await
        .unwrap();
    assert_eq!(p.read_file(&id, "app/page.tsx").await.unwrap(), b"export default 1");
    let entries = p.list_files(&id, ".", 3).await.unwrap();
    let paths: Vec<(&str, EntryKind)> = entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert!(
        paths.contains(&("/home/user/project/index.html", EntryKind::File)),
        "{paths:?}"
    );
    assert!(paths.contains(&("/home/user/project/app", EntryKind::Dir)), "{paths:?}");
    assert!(
        paths.contains(&("/home/user/project/app/lib/util.ts", EntryKind::File)),
        "{paths:?}"
    );
    assert!(matches!(p.read_file(&id, "app").await, Err(Error::WrongKind { .. })));
    // The template stays untouched: sandboxes are copy-on-write clones.
    p.write_file(&id, "index.html", b"changed").await.unwrap();
    let tpl = std::fs::read_to_string(env.dir.path().join("templates/static/project/index.html")).unwrap();
    assert!(tpl.contains("forgeai static template"));
    let other = env.create().await;
    assert!(
        String::from_utf8(p.read_file(&other, "index.html").await.unwrap())
            .unwrap()
            .contains("forgeai static template")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_server_serves_written_file_through_preview_proxy() {
    let env = Env::new().await;
    let id = env.create().await;
    let (port, _proxy) = env.proxy().await;
    let marker = secret();
    env.provider
        .write_file(&id, "index.html", format!("<h1>{marker}</h1>").as_bytes())
        .await
        .unwrap();
    env.provider.write_file(&id, "css/site.css", b"body{}").await.unwrap();
    let host = format!("{}:{port}", env.provider.host(&id, 3000));
    assert_eq!(host, format!("3000-{id}.localhost:{port}"));
    let (status, body) = http_get(port, &host, "/").await;
    assert_eq!((status, body.as_str()), (200, format!("<h1>{marker}</h1>").as_str()));
    let (status, body) = http_get(port, &host, "/css/site.css").await;
    assert_eq!((status, body.as_str()), (200, "body{}"));
    let (status, _) = http_get(port, &format!("3000-nosuchsandbox.localhost:{port}"), "/").await;
    assert_eq!(status, 404);
    let (status, _) = http_get(port, &format!("localhost:{port}"), "/").await;
    assert_eq!(status, 404);
}

const WS_ECHO_JS: &str = r#"
const http = require('http'), crypto = require('crypto');
const port = Number(process.argv[2]);
const frame = (op, p) => Buffer.concat([p.length < 126 ? Buffer.from([0x80 | op, p.length]) : Buffer.from([0x80 | op, 126, p.length >> 8, p.length & 255]), p]);
const srv = http.createServer((req, res) => res.end('ws echo\n'));
srv.on('upgrade', (req, sock) => {
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + '\r\n\r\n');
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const op = buf[0] & 15; let len = buf[1] & 127; let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      const masked = buf[1] & 128; const maskAt = off; if (masked) off += 4;
      if (buf.length < off + len) return;
      const p = Buffer.from(buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) p[i] ^= buf[maskAt + (i & 3)];
      buf = buf.subarray(off + len);
      if (op === 8) { sock.end(Buffer.from([0x88, 0])); return; }
      if (op === 1) sock.write(frame(1, Buffer.concat([Buffer.from('echo:'), p])));
    }
  });
});
srv.listen(port, '0.0.0.0', () => console.log('listening', port));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_preview_proxy() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let env = Env::new().await;
    let id = env.create().await;
    let (port, _proxy) = env.proxy().await;
    env.provider
        .write_file(&id, "ws.js", WS_ECHO_JS.as_bytes())
        .await
        .unwrap();
    let provider = env.provider.clone();
    let id2 = id.clone();
    let server = tokio::spawn(async move {
        provider
            .run_command(
                &id2,
                "node ws.js 3001",
                CommandOptions::default().with_timeout(Duration::from_secs(120)),
            )
            .await
    });
    let host = format!("3001-{id}.localhost:{port}");
    let (status, body) = http_get(port, &host, "/").await; // the proxy waits for the server to listen
    assert_eq!((status, body.as_str()), (200, "ws echo\n"));

    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{host}/hmr"), stream)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    for msg in ["hello", "second message", &"x".repeat(1000)] {
        ws.send(Message::text(msg)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("echo in time")
            .expect("frame")
            .expect("ok");
        assert_eq!(got, Message::text(format!("echo:{msg}")));
    }
    ws.close(None).await.unwrap();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_keep_files_and_processes() {
    let env = Env::new().await;
    let id = env.create().await;
    let (port, _proxy) = env.proxy().await;
    let marker = secret();
    env.provider
        .write_file(&id, "index.html", marker.as_bytes())
        .await
        .unwrap();
    let host = format!("3000-{id}.localhost:{port}");
    assert_eq!(http_get(port, &host, "/").await, (200, marker.clone()));
    let starts = env.provider.dev_server_starts(&id).await.unwrap();

    env.provider.pause(&id).await.unwrap();
    assert_eq!(env.provider.status(&id).await.unwrap(), SandboxStatus::Paused);
    let (_, addr) = env.provider.network(&id).await.unwrap();
    // Frozen: the dev server accepts (kernel backlog) but never answers.
    let mut s = tokio::net::TcpStream::connect((addr, 3000)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut b = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut b))
            .await
            .is_err(),
        "a paused sandbox answered"
    );
    drop(s);

    // A preview request resumes it; the same dev server process continues.
    assert_eq!(http_get(port, &host, "/").await, (200, marker.clone()));
    assert_eq!(env.provider.status(&id).await.unwrap(), SandboxStatus::Running);
    assert_eq!(env.provider.dev_server_starts(&id).await.unwrap(), starts);

    // connect() resumes too.
    env.provider.pause(&id).await.unwrap();
    let info = env.provider.connect(&id).await.unwrap();
    assert_eq!(info.status, SandboxStatus::Running);
    assert_eq!(
        env.provider.read_file(&id, "index.html").await.unwrap(),
        marker.as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sandbox_is_paused_and_resumed_on_use() {
    let env = Env::with(|c| c.reap_interval = Duration::from_millis(100)).await;
    let info = env
        .provider
        .create(
            "static",
            CreateOptions {
                timeout: Some(Duration::from_millis(500)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = info.id;
    let p = env.provider.clone();
    let i = id.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let (p, i) = (p.clone(), i.clone());
            async move { p.status(&i).await.ok() == Some(SandboxStatus::Paused) }
        })
        .await,
        "idle sandbox was not paused"
    );
    env.provider.set_timeout(&id, Duration::from_secs(60)).await.unwrap();
    let r = env.run(&id, "echo back").await;
    assert_eq!(r.stdout, "back\n");
    assert_eq!(env.provider.status(&id).await.unwrap(), SandboxStatus::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_survives_host_restart() {
    let env = Env::new().await;
    let id = env.create().await;
    let marker = secret();
    env.provider
        .write_file(&id, "index.html", marker.as_bytes())
        .await
        .unwrap();
    env.provider.pause(&id).await.unwrap();
    let (netns, veth) = env.provider.network_names(&id);

    // What a reboot leaves: files and state, no mount, namespace, veth, cgroup or process.
    env.provider.shutdown().await;
    assert!(!exists(format!("/run/netns/{netns}")));
    assert!(!exists(format!("/sys/class/net/{veth}")));
    assert!(env.provider.pids(&id).await.unwrap().is_empty());

    // A fresh provider (as after the restart) brings it back on connect.
    let cfg = LocalConfig::new(env.dir.path());
    let restarted = LocalProvider::new(cfg).await.unwrap();
    let info = restarted.connect(&id).await.unwrap();
    assert_eq!(info.status, SandboxStatus::Running);
    assert_eq!(restarted.read_file(&id, "index.html").await.unwrap(), marker.as_bytes());
    let proxy = PreviewProxy::new(Arc::new(restarted.clone()), PreviewConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let _ = forgeai_preview::serve(listener, proxy).await;
    });
    assert_eq!(
        http_get(port, &format!("3000-{id}.localhost:{port}"), "/").await,
        (200, marker)
    );
    server.abort();
    assert!(restarted.kill(&id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_server_is_restarted_when_it_dies() {
    let env = Env::new().await;
    let id = env.create().await;
    let (port, _proxy) = env.proxy().await;
    let host = format!("3000-{id}.localhost:{port}");
    assert_eq!(http_get(port, &host, "/").await.0, 200);
    for pid in env.provider.pids(&id).await.unwrap() {
        // SAFETY: kill(2) on a pid from the sandbox's own cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let p = env.provider.clone();
    let i = id.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let (p, i) = (p.clone(), i.clone());
            async move { p.dev_server_starts(&i).await.unwrap_or(0) >= 2 }
        })
        .await
    );
    assert_eq!(http_get(port, &host, "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_removes_everything_and_connect_reports_gone() {
    let env = Env::new().await;
    let id = env.create().await;
    let (netns, veth) = env.provider.network_names(&id);
    assert!(exists(format!("/run/netns/{netns}")));
    assert!(exists(format!("/sys/class/net/{veth}")));
    assert!(exists(format!("/sys/fs/cgroup/pids/forgeai/{id}")) || exists(format!("/sys/fs/cgroup/forgeai/{id}")));
    let (_, sandbox_addr) = env.provider.network(&id).await.unwrap();
    let element = format!("\"{veth}\" . {sandbox_addr}");
    let listed = |what: &[&str]| {
        let out = std::process::Command::new("nft")
            .args([&["list"], what].concat())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let admitted = || listed(&["set", "inet", "forgeai", "sb_addrs"]).contains(&element);
    assert!(
        admitted(),
        "the sandbox's interface and address are in the firewall's set"
    );
    // Forwarded traffic to private and link-local ranges is dropped (checked on the rules: tests
    // never send probes to addresses outside this machine).
    let rules = listed(&["chain", "inet", "forgeai", "from_sandbox"]);
    for range in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"] {
        assert!(rules.contains(range), "{range} not blocked: {rules}");
    }

    assert!(env.provider.kill(&id).await.unwrap());
    assert!(!exists(format!("/run/netns/{netns}")));
    assert!(!exists(format!("/sys/class/net/{veth}")));
    assert!(!exists(format!("/sys/fs/cgroup/pids/forgeai/{id}")) && !exists(format!("/sys/fs/cgroup/forgeai/{id}")));
    assert!(!admitted(), "the firewall forgot the sandbox");
    assert!(!exists(env.dir.path().join("sandboxes").join(&id)));

    assert!(matches!(env.provider.connect(&id).await, Err(Error::Gone { .. })));
    assert!(matches!(
        env.provider.run_command(&id, "true", CommandOptions::default()).await,
        Err(Error::Gone { .. })
    ));
    assert!(!env.provider.kill(&id).await.unwrap());
    assert!(matches!(
        env.provider.connect("nosuchsandbox").await,
        Err(Error::Gone { .. })
    ));
    assert!(matches!(
        env.provider.connect("../etc").await,
        Err(Error::InvalidId { .. })
    ));
    assert!(matches!(
        env.provider.create("nope", CreateOptions::default()).await,
        Err(Error::TemplateNotFound { .. })
    ));
}

/// Unmounts the small tmpfs of the disk-full test when dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_work_with_the_data_dir_under_a_mode_700_directory() {
    let private = tempfile::Builder::new().prefix("forgeai-sbx-700-").tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let data = tempfile::Builder::new()
        .prefix("data-")
        .tempdir_in(private.path())
        .unwrap();
    std::fs::set_permissions(data.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let env = Env::in_dir(data, |_| {}).await;
    let id = env.create().await;
    env.provider.write_file(&id, "index.html", b"private ok").await.unwrap();
    let r = env.run(&id, "cat index.html; id -un; cat /etc/hostname").await;
    assert_eq!(
        (r.exit_code, r.stdout.as_str()),
        (0, "private okuser\nsandbox\n"),
        "{r:?}"
    );
    let (port, _proxy) = env.proxy().await;
    let (status, body) = http_get(port, &format!("3000-{id}.localhost"), "/index.html").await;
    assert_eq!((status, body.as_str()), (200, "private ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_shows_no_host_path_in_its_processes() {
    let env = Env::new().await;
    let id = env.create().await;
    let data_dir = env.dir.path().canonicalize().unwrap();
    let r = env
        .run(
            &id,
            "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/environ | tr '\\0' ' '",
        )
        .await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    assert!(r.stdout.contains("bwrap"), "{r:?}");
    for leak in [data_dir.to_string_lossy().as_ref(), "/run/forgeai", "sandboxes/"] {
        assert!(!r.stdout.contains(leak), "{leak} shows in {:?}", r.stdout);
    }
}

/// The real `forgeai-v1` template (Next.js + Tailwind + shadcn/ui): a page written into a
/// sandbox of it renders in headless Chromium through the preview URL.
///
/// Runs when `FORGEAI_TEMPLATE_CACHE` names a directory (CI points it at a persistent one). The
/// template is built there only when it is not already: the build installs ~500 MB from the npm
/// registry (about a minute on a fast line). The test's sandboxes live in a throwaway data dir,
/// so the cache holds nothing but the template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgeai_v1_template_builds_and_serves() {
    let cache = match forgeai_test_support::template_cache() {
        Some(cache) => cache,
        None => {
            eprintln!(
                "SKIPPED forgeai_v1_template_builds_and_serves: {} is not set. Set it to a directory that \
                 persists between runs (e.g. $HOME/.cache/forgeai-ci/templates-data) to build the forgeai-v1 template there \
                 once (~500 MB from npm) and check a page of it renders in headless Chromium.",
                forgeai_test_support::TEMPLATE_CACHE_VAR
            );
            return;
        }
    };
    require_root();
    let started = Instant::now();
    let (template, built) = forgeai_test_support::cached_forgeai_v1(&cache).await;
    eprintln!(
        "forgeai-v1 template {} in {:?}",
        if built { "built" } else { "found in the cache" },
        started.elapsed()
    );
    assert!(template.project_dir().join("components/ui/button.jsx").exists());
    assert!(template.project_dir().join("node_modules/next").exists());

    // Sandboxes go to a throwaway data dir whose templates/forgeai-v1 links to the cached one
    // (overlayfs mounts it as the read-only lower layer, so the cache is never written).
    let dir = tempfile::Builder::new().prefix("forgeai-sbx-v1-").tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::os::unix::fs::symlink(&template.dir, dir.path().join("templates/forgeai-v1")).unwrap();
    let env = Env::in_dir(dir, |c| {
        c.limits = Limits {
            memory_bytes: Some(3 << 30),
            pids: Some(2048),
            cpu_cores: None,
            cpu_shares: None,
        }
    })
    .await;
    let id = env
        .provider
        .create("forgeai-v1", CreateOptions::default())
        .await
        .unwrap()
        .id;
    let (port, _proxy) = env.proxy().await;
    let marker = format!("forgeai-v1-page-{:016x}", rand_u64());
    // A server page using the template's shadcn/ui Button and alias, plus a client component
    // whose text only appears once React hydrated the page in the browser.
    env.provider
        .write_file(
            &id,
            "app/hydrated.tsx",
            br#""use client";
import { useEffect, useState } from "react";

export function Hydrated() {
  const [on, setOn] = useState(false);
  useEffect(() => setOn(true), []);
  return <p id="hydration">{on ? "hydrated-in-browser" : "server-rendered"}</p>;
}
"#,
        )
        .await
        .unwrap();
    let page = format!(
        r#"import {{ Button }} from "@/components/ui/button";
import {{ Hydrated }} from "./hydrated";

export default function Page() {{
  return (
    <main className="flex min-h-screen flex-col items-center justify-center gap-6 p-8">
      <h1 className="text-4xl font-bold tracking-tight">{marker}</h1>
      <Button size="lg" id="cta">Rendered by forgeai-v1</Button>
      <Hydrated />
    </main>
  );
}}
"#
    );
    env.provider
        .write_file(&id, "app/page.tsx", page.as_bytes())
        .await
        .unwrap();

    let url = format!("http://{}:{port}/", env.provider.host(&id, 3000));
    assert_eq!(url, format!("http://3000-{id}.localhost:{port}/"));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut last = String::new();
    let rendered = loop {
        let dom = chromium(&url, &["--dump-dom"]).await;
        // Server-rendered text, the shadcn/ui Button with its variant classes, client-side React.
        let button = dom
            .split("<button")
            .skip(1)
            .any(|b| b.contains(r#"id="cta""#) && b.contains("bg-primary text-primary-foreground"));
        if dom.contains(&marker) && button && dom.contains("hydrated-in-browser") {
            break true;
        }
        last = dom;
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(
        rendered,
        "Chromium did not render the page within 2 minutes.\nlast DOM: {last}\ndev server log: {}",
        env.provider
            .dev_server_output(&id, 0)
            .await
            .unwrap()
            .map(|o| o.text)
            .unwrap_or_default()
    );
    eprintln!(
        "page rendered in Chromium {:?} after the sandbox was created",
        started.elapsed()
    );

    let shot = artifacts_dir().join("forgeai-v1-preview.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &[&format!("--screenshot={}", shot.display()), "--window-size=1280,800"],
    )
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "implausible screenshot {}",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.display());

    // Edits show up (on-demand compile / hot reload).
    env.provider
        .write_file(
            &id,
            "app/page.tsx",
            b"export default function P() { return <p>edited-by-test</p>; }",
        )
        .await
        .unwrap();
    let host = format!("3000-{id}.localhost:{port}");
    let ok = eventually(Duration::from_secs(60), || {
        let host = host.clone();
        async move { http_get(port, &host, "/").await.1.contains("edited-by-test") }
    })
    .await;
    assert!(ok, "edit not served");
}

/// `target/test-artifacts` (under CARGO_TARGET_DIR when set), created.
fn artifacts_dir() -> std::path::PathBuf {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => workspace.join(t), // join keeps an absolute path as is
        _ => workspace.join("target"),
    };
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir.canonicalize().unwrap_or(dir)
}

/// Loads `url` in headless Debian Chromium with `args` added; returns its stdout. Chromium
/// resolves `*.localhost` to loopback by itself. Killed (with its helper processes) after 60 s.
async fn chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::Builder::new().prefix("forgeai-chromium-").tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("/usr/bin/chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-proxy-server",
        // Let the page's scripts run (React hydrates) before the DOM or screenshot is taken.
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let child = cmd.spawn().expect("run /usr/bin/chromium (apt-get install chromium)");
    let pgid = child.id().expect("chromium pid") as i32;
    match tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("chromium output");
            if !out.status.success() {
                eprintln!(
                    "chromium exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        Err(_) => {
            // SAFETY: kill(2) on the process group chromium leads (process_group(0) above).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            eprintln!("chromium did not finish loading {url} within 60 s");
            String::new()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_works_as_a_trait_object_through_sandbox_handles() {
    let env = Env::with(|c| c.preview_port = Some(8080)).await;
    let provider: Arc<dyn SandboxProvider> = Arc::new(env.provider.clone());
    let sbx = forgeai_sandbox::Sandbox::create(provider.clone(), "static", CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(sbx.host(3000), format!("3000-{}.localhost:8080", sbx.id()));
    sbx.write_file("hello.txt", "hi").await.unwrap();
    let again = forgeai_sandbox::Sandbox::connect(provider, sbx.id()).await.unwrap();
    assert_eq!(again.read_text("hello.txt").await.unwrap(), "hi");
    let r = again.run("cat hello.txt", CommandOptions::default()).await.unwrap();
    assert_eq!(r.stdout, "hi");
    assert!(
        again
            .list_files(".")
            .await
            .unwrap()
            .iter()
            .any(|e| e.name == "hello.txt")
    );
    again.set_timeout(Duration::from_secs(10)).await.unwrap();
    assert!(sbx.kill().await.unwrap());
    assert!(again.read_file("hello.txt").await.unwrap_err().is_gone());
}
