//! One suite of the sandbox trait's contract, run against both providers: the local one, and the
//! E2B one talking to the mock E2B (which runs local sandboxes underneath).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::E2bEnv;
use forgeai_preview::{PreviewConfig, PreviewProxy};
use forgeai_sandbox::{
    CommandOptions, CreateOptions, EntryKind, Error, PreviewTarget, SandboxProvider, SandboxStatus, Stream,
};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Local,
    E2b,
}

struct Subject {
    env: E2bEnv,
    kind: Kind,
    provider: Arc<dyn SandboxProvider>,
    preview: Arc<dyn PreviewTarget>,
}

impl Subject {
    async fn new(kind: Kind) -> Subject {
        let env = E2bEnv::new().await;
        let (provider, preview): (Arc<dyn SandboxProvider>, Arc<dyn PreviewTarget>) = match kind {
            Kind::Local => (Arc::new(env.local.clone()), Arc::new(env.local.clone())),
            Kind::E2b => {
                let provider = env.provider();
                (Arc::new(provider.clone()), Arc::new(provider))
            }
        };
        Subject {
            env,
            kind,
            provider,
            preview,
        }
    }

    async fn create(&self) -> String {
        self.provider
            .create("static", CreateOptions::default())
            .await
            .expect("create a sandbox")
            .id
    }

    /// Loses the sandbox behind the provider's back: killed on the host, or stopped by E2B.
    async fn lose(&self, id: &str) {
        match self.kind {
            Kind::Local => {
                self.env.local.kill(id).await.expect("kill");
            }
            Kind::E2b => self.env.mock.expire(id).await,
        }
    }

    async fn run(&self, id: &str, command: &str) -> forgeai_sandbox::CommandResult {
        self.provider
            .run_command(
                id,
                command,
                CommandOptions::default().with_timeout(Duration::from_secs(30)),
            )
            .await
            .expect("run a command")
    }
}

macro_rules! on_both_providers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn local() {
                super::$name(super::Subject::new(super::Kind::Local).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn e2b() {
                super::$name(super::Subject::new(super::Kind::E2b).await).await;
            }
        }
    )*};
}

on_both_providers!(
    commands_stream_their_output,
    a_command_past_its_timeout_is_killed,
    files_are_written_read_and_listed,
    many_files_are_restored_at_once,
    pause_and_resume_keep_files,
    a_lost_sandbox_is_gone_and_a_new_one_takes_its_files,
    sandboxes_do_not_see_each_other,
    the_preview_reaches_the_dev_server,
);

async fn commands_stream_their_output(s: Subject) {
    let id = s.create().await;
    s.run(&id, "mkdir -p sub").await;
    let chunks = Arc::new(Mutex::new(Vec::new()));
    let sink = chunks.clone();
    let result = s
        .provider
        .run_command(
            &id,
            "echo one; echo two >&2; printf 'h\\xc3'; sleep 0.2; printf '\\xa9\\n'; echo \"$GREETING\" from $(pwd); exit 4",
            CommandOptions::default()
                .with_env("GREETING", "hi")
                .with_cwd("sub")
                .on_output(move |chunk| sink.lock().unwrap().push(chunk.clone())),
        )
        .await
        .expect("run");
    assert_eq!(result.exit_code, 4);
    assert_eq!(result.stdout, "one\nhé\nhi from /home/user/project/sub\n");
    assert_eq!(result.stderr, "two\n");
    let streamed: String = chunks
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.stream == Stream::Stdout)
        .map(|c| c.data.clone())
        .collect();
    assert_eq!(streamed, result.stdout);
}

async fn a_command_past_its_timeout_is_killed(s: Subject) {
    let id = s.create().await;
    let started = std::time::Instant::now();
    let error = s
        .provider
        .run_command(
            &id,
            "echo started; sleep 30 & wait",
            CommandOptions::default().with_timeout(Duration::from_secs(2)),
        )
        .await
        .expect_err("the command outlives its timeout");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    match error {
        Error::CommandTimeout { stdout, .. } => assert_eq!(stdout, "started\n"),
        other => panic!("not a timeout: {other}"),
    }
    // The sandbox still works, and nothing of the killed command is left running.
    let left = s.run(&id, "ps -eo args | grep -c '^sleep 30' || true").await;
    assert_eq!(left.stdout.trim(), "0", "the timed-out command's children were killed");
}

async fn files_are_written_read_and_listed(s: Subject) {
    let id = s.create().await;
    s.provider
        .write_file(&id, "app/page.tsx", b"export default 1;\n")
        .await
        .expect("write");
    s.provider
        .write_file(&id, "/home/user/project/app/nested/deep.txt", "é".as_bytes())
        .await
        .expect("write absolute");
    assert_eq!(
        s.provider.read_file(&id, "app/page.tsx").await.unwrap(),
        b"export default 1;\n"
    );
    assert_eq!(
        s.provider.read_file(&id, "app/nested/deep.txt").await.unwrap(),
        "é".as_bytes()
    );
    let listed = s.provider.list_files(&id, "app", 2).await.expect("list");
    let names: Vec<(&str, EntryKind)> = listed.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        vec![
            ("/home/user/project/app/nested", EntryKind::Dir),
            ("/home/user/project/app/nested/deep.txt", EntryKind::File),
            ("/home/user/project/app/page.tsx", EntryKind::File),
        ]
    );
    assert_eq!(listed[2].size, 18);
    assert!(matches!(
        s.provider.read_file(&id, "missing.txt").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.provider.list_files(&id, "missing-dir", 1).await,
        Err(Error::NotFound { .. })
    ));
    for escape in ["../../etc/passwd", "/etc/passwd"] {
        assert!(matches!(
            s.provider.write_file(&id, escape, b"x").await,
            Err(Error::PathEscape { .. })
        ));
    }
    // Code in the sandbox sees what the file API wrote.
    assert_eq!(s.run(&id, "cat app/page.tsx").await.stdout, "export default 1;\n");
}

async fn many_files_are_restored_at_once(s: Subject) {
    let id = s.create().await;
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("src/part{}/file{i}.ts", i % 4),
                format!("export const n = {i};\n").into_bytes(),
            )
        })
        .collect();
    s.provider.write_files(&id, &files).await.expect("write files");
    let count = s.run(&id, "find src -type f | wc -l").await;
    assert_eq!(count.stdout.trim(), "40");
    assert_eq!(
        s.provider.read_file(&id, "src/part3/file39.ts").await.unwrap(),
        b"export const n = 39;\n"
    );
}

async fn pause_and_resume_keep_files(s: Subject) {
    let id = s.create().await;
    s.provider.write_file(&id, "kept.txt", b"still here").await.unwrap();
    s.provider.pause(&id).await.expect("pause");
    let info = s.provider.connect(&id).await.expect("connect resumes");
    assert_eq!(info.status, SandboxStatus::Running);
    assert_eq!(s.run(&id, "cat kept.txt").await.stdout, "still here");
    // Pausing again and using the sandbox without an explicit connect resumes it too.
    s.provider.pause(&id).await.expect("pause again");
    assert_eq!(s.provider.read_file(&id, "kept.txt").await.unwrap(), b"still here");
}

async fn a_lost_sandbox_is_gone_and_a_new_one_takes_its_files(s: Subject) {
    let id = s.create().await;
    s.provider.write_file(&id, "index.html", b"<h1>v1</h1>").await.unwrap();
    let saved = vec![(
        "index.html".to_owned(),
        s.provider.read_file(&id, "index.html").await.unwrap(),
    )];
    s.lose(&id).await;
    assert!(
        matches!(s.provider.connect(&id).await, Err(Error::Gone { .. })),
        "a lost sandbox is Gone"
    );
    assert!(matches!(
        s.provider.run_command(&id, "true", CommandOptions::default()).await,
        Err(Error::Gone { .. })
    ));
    let new = s.create().await;
    assert_ne!(new, id);
    s.provider.write_files(&new, &saved).await.unwrap();
    assert_eq!(s.run(&new, "cat index.html").await.stdout, "<h1>v1</h1>");
    assert!(
        !s.provider.kill(&id).await.unwrap(),
        "killing a lost sandbox reports it did not exist"
    );
    assert!(s.provider.kill(&new).await.unwrap());
}

async fn sandboxes_do_not_see_each_other(s: Subject) {
    let (a, b) = (s.create().await, s.create().await);
    s.provider.write_file(&a, "secret.txt", b"a's").await.unwrap();
    assert!(matches!(
        s.provider.read_file(&b, "secret.txt").await,
        Err(Error::NotFound { .. })
    ));
    assert!(!s.run(&b, "ls /home/user/project").await.stdout.contains("secret"));
}

async fn the_preview_reaches_the_dev_server(s: Subject) {
    let id = s.create().await;
    s.provider
        .write_file(&id, "index.html", b"<h1>served through the preview</h1>")
        .await
        .unwrap();
    let proxy = PreviewProxy::new(s.preview.clone(), PreviewConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(forgeai_preview::serve(listener, proxy));
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .header("Host", format!("3000-{id}.localhost:{port}"))
        .send()
        .await
        .expect("preview answers");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "<h1>served through the preview</h1>");
    server.abort();
}
