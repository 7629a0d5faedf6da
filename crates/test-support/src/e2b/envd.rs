//! The mock's envd: Connect-RPC (`process.Process`, `filesystem.Filesystem`) and `/files`, served
//! by the local sandbox underneath.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use forgeai_e2b::proto::filesystem::{
    EntryInfo, FileType, ListDirRequest, ListDirResponse, MakeDirRequest, MakeDirResponse, MoveRequest, MoveResponse,
    RemoveRequest, RemoveResponse, StatRequest, StatResponse,
};
use forgeai_e2b::proto::process::process_event::{DataEvent, EndEvent, Event, KeepAlive, StartEvent, data_event};
use forgeai_e2b::proto::process::{
    ListResponse, ProcessEvent, ProcessInfo, SendSignalRequest, SendSignalResponse, StartRequest, StartResponse,
    process_selector,
};
use forgeai_sandbox::{CommandOptions, EntryKind, Error, HOME_DIR, OutputChunk, PROJECT_DIR, SandboxProvider};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::mpsc;

use super::{MockSandbox, Shared, error, lock};

pub(super) async fn handle(shared: Arc<Shared>, id: &str, sandbox: &MockSandbox, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    match (request.method().as_str(), path.as_str()) {
        ("GET", "/health") => StatusCode::NO_CONTENT.into_response(),
        ("GET", "/files") => download(&shared, id, request).await,
        ("POST", "/files") => upload(&shared, id, request).await,
        ("POST", method) => rpc(shared, id, sandbox, method.trim_start_matches('/').to_owned(), request).await,
        _ => error(StatusCode::NOT_FOUND, format!("envd has no {path}")),
    }
}

/// Paths relative to the user's home, as envd resolves them.
fn resolve(path: &str) -> String {
    match path {
        "" => HOME_DIR.to_owned(),
        p if p.starts_with('/') => p.to_owned(),
        p => format!("{HOME_DIR}/{p}"),
    }
}

fn query(request: &Request) -> BTreeMap<String, String> {
    request
        .uri()
        .query()
        .map(|q| super::url_pairs(q).into_iter().collect())
        .unwrap_or_default()
}

/// envd's `/files` error for a sandbox error.
fn file_error(path: &str, e: Error) -> Response {
    match e {
        Error::NotFound { .. } => error(StatusCode::NOT_FOUND, format!("path '{path}' does not exist")),
        Error::WrongKind { reason, .. } => error(StatusCode::BAD_REQUEST, format!("path '{path}': {reason}")),
        Error::PathEscape { .. } => error(
            StatusCode::BAD_REQUEST,
            format!("path '{path}' is outside {PROJECT_DIR}, the only directory this mock's envd serves"),
        ),
        Error::DiskFull { .. } => error(StatusCode::INSUFFICIENT_STORAGE, "not enough disk space available"),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

async fn download(shared: &Shared, id: &str, request: Request) -> Response {
    let path = resolve(query(&request).get("path").map(String::as_str).unwrap_or(""));
    match shared.provider.read_file(id, &path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => file_error(&path, e),
    }
}

async fn upload(shared: &Shared, id: &str, request: Request) -> Response {
    let query = query(&request);
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if content_type.starts_with("multipart/form-data") {
        let mut form = match Multipart::from_request(request, &()).await {
            Ok(form) => form,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad multipart body: {e}")),
        };
        loop {
            match form.next_field().await {
                Ok(Some(field)) => {
                    let name = field.file_name().map(str::to_owned).unwrap_or_default();
                    match field.bytes().await {
                        Ok(bytes) => files.push((name, bytes.to_vec())),
                        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad multipart part: {e}")),
                    }
                }
                Ok(None) => break,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad multipart body: {e}")),
            }
        }
        // With a `path` parameter and one part, the parameter names the file.
        if let (Some(path), [file]) = (query.get("path"), files.as_mut_slice()) {
            file.0 = path.clone();
        }
    } else if content_type.starts_with("application/octet-stream") {
        let Some(path) = query.get("path") else {
            return error(
                StatusCode::BAD_REQUEST,
                "the path parameter is required for an octet-stream upload",
            );
        };
        match axum::body::to_bytes(request.into_body(), 512 << 20).await {
            Ok(bytes) => files.push((path.clone(), bytes.to_vec())),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")),
        }
    } else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unsupported content type {content_type:?}"),
        );
    }
    let mut written = Vec::new();
    for (path, contents) in files {
        let path = resolve(&path);
        if let Err(e) = shared.provider.write_file(id, &path, &contents).await {
            return file_error(&path, e);
        }
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        written.push(json!({ "name": name, "type": "file", "path": path }));
    }
    axum::Json(written).into_response()
}

#[derive(Clone, Copy)]
enum Codec {
    Json,
    Proto,
}

struct ConnectError {
    code: &'static str,
    message: String,
}

impl ConnectError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        ConnectError {
            code,
            message: message.into(),
        }
    }

    fn from_sandbox(path: &str, e: Error) -> Self {
        match e {
            Error::NotFound { .. } => ConnectError::new("not_found", format!("path '{path}' does not exist")),
            Error::WrongKind { reason, .. } => {
                ConnectError::new("invalid_argument", format!("path '{path}': {reason}"))
            }
            Error::PathEscape { .. } => ConnectError::new(
                "permission_denied",
                format!("path '{path}' is outside {PROJECT_DIR}, the only directory this mock's envd serves"),
            ),
            other => ConnectError::new("internal", other.to_string()),
        }
    }

    /// A unary call's error: the Connect code's HTTP status and the error as JSON.
    fn unary(self) -> Response {
        let status = match self.code {
            "not_found" => StatusCode::NOT_FOUND,
            "invalid_argument" => StatusCode::BAD_REQUEST,
            "already_exists" => StatusCode::CONFLICT,
            "permission_denied" => StatusCode::FORBIDDEN,
            "unimplemented" => StatusCode::NOT_IMPLEMENTED,
            "deadline_exceeded" => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            axum::Json(json!({ "code": self.code, "message": self.message })),
        )
            .into_response()
    }

    fn end_of_stream(self) -> Vec<u8> {
        envelope(
            0x02,
            serde_json::to_vec(&json!({ "error": { "code": self.code, "message": self.message } })).unwrap_or_default(),
        )
    }
}

fn envelope(flags: u8, payload: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn encode<T: prost::Message + Serialize>(codec: Codec, message: &T) -> Vec<u8> {
    match codec {
        Codec::Json => serde_json::to_vec(message).unwrap_or_default(),
        Codec::Proto => message.encode_to_vec(),
    }
}

fn decode<T: prost::Message + Default + DeserializeOwned>(codec: Codec, bytes: &[u8]) -> Result<T, ConnectError> {
    match codec {
        Codec::Json => serde_json::from_slice(bytes).map_err(|e| ConnectError::new("invalid_argument", e.to_string())),
        Codec::Proto => T::decode(bytes).map_err(|e| ConnectError::new("invalid_argument", e.to_string())),
    }
}

async fn rpc(shared: Arc<Shared>, id: &str, sandbox: &MockSandbox, method: String, request: Request) -> Response {
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (codec, streaming) = match content_type.split(';').next().unwrap_or("").trim() {
        "application/json" => (Codec::Json, false),
        "application/proto" => (Codec::Proto, false),
        "application/connect+json" => (Codec::Json, true),
        "application/connect+proto" => (Codec::Proto, true),
        other => {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content type {other:?} for {method}"),
            )
                .into_response();
        }
    };
    let body = match axum::body::to_bytes(request.into_body(), 64 << 20).await {
        Ok(body) => body,
        Err(e) => return ConnectError::new("invalid_argument", e.to_string()).unary(),
    };
    if streaming {
        if method != "process.Process/Start" {
            return stream_response(
                codec,
                vec![ConnectError::new("unimplemented", format!("{method} is not a server stream")).end_of_stream()],
            );
        }
        // A streaming request is one enveloped message.
        let message = if body.len() >= 5 { body.slice(5..) } else { Bytes::new() };
        let request = match decode::<StartRequest>(codec, &message) {
            Ok(request) => request,
            Err(e) => return stream_response(codec, vec![e.end_of_stream()]),
        };
        let deadline = headers
            .get("connect-timeout-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(3600));
        let keepalive = headers
            .get("keepalive-ping-interval")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.clamp(1, 1)))
            .unwrap_or(Duration::from_secs(1));
        return start_process(shared, id, sandbox, codec, request, deadline, keepalive);
    }
    let answer = match method.as_str() {
        "process.Process/SendSignal" => {
            unary(codec, &body, |r: SendSignalRequest| async move {
                let pid = match r.process.and_then(|p| p.selector) {
                    Some(process_selector::Selector::Pid(pid)) => pid,
                    _ => return Err(ConnectError::new("invalid_argument", "select the process by pid")),
                };
                match lock(&shared.processes).remove(&(id.to_owned(), pid)) {
                    Some(kill) => {
                        let _ = kill.send(());
                        Ok(SendSignalResponse {})
                    }
                    None => Err(ConnectError::new(
                        "not_found",
                        format!("process with pid {pid} not found"),
                    )),
                }
            })
            .await
        }
        "process.Process/List" => {
            unary(codec, &body, |_: forgeai_e2b::proto::process::ListRequest| async move {
                let processes = lock(&shared.processes)
                    .keys()
                    .filter(|(sandbox, _)| sandbox == id)
                    .map(|(_, pid)| ProcessInfo {
                        pid: *pid,
                        ..Default::default()
                    })
                    .collect();
                Ok(ListResponse { processes })
            })
            .await
        }
        "filesystem.Filesystem/ListDir" => {
            unary(codec, &body, |r: ListDirRequest| async move {
                let path = resolve(&r.path);
                let entries = shared
                    .provider
                    .list_files(id, &path, r.depth.max(1))
                    .await
                    .map_err(|e| ConnectError::from_sandbox(&path, e))?;
                Ok(ListDirResponse {
                    entries: entries.into_iter().map(entry).collect(),
                })
            })
            .await
        }
        "filesystem.Filesystem/Stat" => {
            unary(codec, &body, |r: StatRequest| async move {
                let path = resolve(&r.path);
                Ok(StatResponse {
                    entry: Some(stat(&shared, id, &path).await?),
                })
            })
            .await
        }
        "filesystem.Filesystem/MakeDir" => {
            unary(codec, &body, |r: MakeDirRequest| async move {
                let path = resolve(&r.path);
                if stat(&shared, id, &path).await.is_ok() {
                    return Err(ConnectError::new(
                        "already_exists",
                        format!("directory '{path}' already exists"),
                    ));
                }
                shell(&shared, id, &format!("mkdir -p -- {}", quote(&path))).await?;
                Ok(MakeDirResponse {
                    entry: Some(stat(&shared, id, &path).await?),
                })
            })
            .await
        }
        "filesystem.Filesystem/Remove" => {
            unary(codec, &body, |r: RemoveRequest| async move {
                let path = resolve(&r.path);
                stat(&shared, id, &path).await?;
                shell(&shared, id, &format!("rm -rf -- {}", quote(&path))).await?;
                Ok(RemoveResponse {})
            })
            .await
        }
        "filesystem.Filesystem/Move" => {
            unary(codec, &body, |r: MoveRequest| async move {
                let (source, destination) = (resolve(&r.source), resolve(&r.destination));
                stat(&shared, id, &source).await?;
                shell(
                    &shared,
                    id,
                    &format!("mv -- {} {}", quote(&source), quote(&destination)),
                )
                .await?;
                Ok(MoveResponse {
                    entry: Some(stat(&shared, id, &destination).await?),
                })
            })
            .await
        }
        _ => Err(ConnectError::new(
            "unimplemented",
            format!("{method} is not implemented by the mock envd"),
        )),
    };
    match answer {
        Ok(bytes) => {
            let content_type = match codec {
                Codec::Json => "application/json",
                Codec::Proto => "application/proto",
            };
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Err(e) => e.unary(),
    }
}

async fn unary<Req, Resp, F, Fut>(codec: Codec, body: &[u8], call: F) -> Result<Vec<u8>, ConnectError>
where
    Req: prost::Message + Default + DeserializeOwned,
    Resp: prost::Message + Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp, ConnectError>>,
{
    let request = decode::<Req>(codec, body)?;
    Ok(encode(codec, &call(request).await?))
}

fn entry(info: forgeai_sandbox::EntryInfo) -> EntryInfo {
    let file_type = match info.kind {
        EntryKind::File => FileType::File,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Other => FileType::Unspecified,
    };
    EntryInfo {
        name: info.name,
        r#type: file_type as i32,
        path: info.path,
        size: info.size as i64,
        mode: if info.kind == EntryKind::Dir { 0o755 } else { 0o644 },
        permissions: if info.kind == EntryKind::Dir {
            "drwxr-xr-x"
        } else {
            "-rw-r--r--"
        }
        .into(),
        owner: "user".into(),
        group: "user".into(),
        is_symlink: info.kind == EntryKind::Symlink,
        ..Default::default()
    }
}

async fn stat(shared: &Shared, id: &str, path: &str) -> Result<EntryInfo, ConnectError> {
    let trimmed = path.trim_end_matches('/');
    let Some((parent, name)) = trimmed.rsplit_once('/') else {
        return Err(ConnectError::new("invalid_argument", format!("bad path '{path}'")));
    };
    if trimmed == PROJECT_DIR {
        return Ok(EntryInfo {
            name: name.into(),
            r#type: FileType::Directory as i32,
            path: trimmed.into(),
            ..Default::default()
        });
    }
    let siblings = shared
        .provider
        .list_files(id, parent, 1)
        .await
        .map_err(|e| ConnectError::from_sandbox(path, e))?;
    siblings
        .into_iter()
        .find(|e| e.name == name)
        .map(entry)
        .ok_or_else(|| ConnectError::new("not_found", format!("path '{path}' does not exist")))
}

async fn shell(shared: &Shared, id: &str, command: &str) -> Result<(), ConnectError> {
    match shared
        .provider
        .run_command(id, command, CommandOptions::default())
        .await
    {
        Ok(result) if result.success() => Ok(()),
        Ok(result) => Err(ConnectError::new("internal", result.stderr)),
        Err(e) => Err(ConnectError::new("internal", e.to_string())),
    }
}

fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn stream_response(codec: Codec, envelopes: Vec<Vec<u8>>) -> Response {
    let (tx, rx) = mpsc::unbounded_channel();
    for e in envelopes {
        let _ = tx.send(e);
    }
    drop(tx);
    streaming_body(codec, rx)
}

fn streaming_body(codec: Codec, rx: mpsc::UnboundedReceiver<Vec<u8>>) -> Response {
    let content_type = match codec {
        Codec::Json => "application/connect+json",
        Codec::Proto => "application/connect+proto",
    };
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(Bytes::from(bytes)), rx))
    });
    ([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response()
}

fn event(codec: Codec, event: Event) -> Vec<u8> {
    envelope(
        0,
        encode(
            codec,
            &StartResponse {
                event: Some(ProcessEvent { event: Some(event) }),
            },
        ),
    )
}

/// `process.Process/Start`: start event, keepalives, output as it comes, the end event, and the
/// end of the stream (with `deadline_exceeded` when the call's deadline passed first).
fn start_process(
    shared: Arc<Shared>,
    id: &str,
    sandbox: &MockSandbox,
    codec: Codec,
    request: StartRequest,
    deadline: Duration,
    keepalive: Duration,
) -> Response {
    let config = request.process.unwrap_or_default();
    let command = std::iter::once(config.cmd.clone())
        .chain(config.args.iter().cloned())
        .map(|word| quote(&word))
        .collect::<Vec<_>>()
        .join(" ");
    let mut envs = sandbox.env_vars.clone();
    envs.extend(config.envs);
    let pid = shared.next_pid.fetch_add(1, Ordering::SeqCst);
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
    lock(&shared.processes).insert((id.to_owned(), pid), kill_tx);
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(event(codec, Event::Start(StartEvent { pid })));
    let _ = tx.send(event(codec, Event::Keepalive(KeepAlive {})));
    let id = id.to_owned();
    tokio::spawn(async move {
        let output = tx.clone();
        let options = CommandOptions {
            cwd: Some(resolve(config.cwd.as_deref().unwrap_or(""))),
            envs,
            timeout: Some(deadline),
            on_output: Some(Arc::new(move |chunk: &OutputChunk| {
                let bytes = chunk.data.as_bytes().to_vec();
                let output_event = match chunk.stream {
                    forgeai_sandbox::Stream::Stdout => data_event::Output::Stdout(bytes),
                    forgeai_sandbox::Stream::Stderr => data_event::Output::Stderr(bytes),
                };
                let _ = output.send(event(
                    codec,
                    Event::Data(DataEvent {
                        output: Some(output_event),
                    }),
                ));
            })),
        };
        let run = shared.provider.run_command(&id, &command, options);
        futures::pin_mut!(run);
        let mut ticker = tokio::time::interval(keepalive);
        let mut kill_rx = kill_rx;
        let finished = loop {
            tokio::select! {
                result = &mut run => break Some(result),
                _ = &mut kill_rx => break None,
                _ = ticker.tick() => { let _ = tx.send(event(codec, Event::Keepalive(KeepAlive {}))); }
            }
        };
        lock(&shared.processes).remove(&(id.clone(), pid));
        let end = |code: i32, exited: bool, status: String| {
            event(
                codec,
                Event::End(EndEvent {
                    exit_code: code,
                    exited,
                    status,
                    error: None,
                }),
            )
        };
        match finished {
            // The sandbox went away under the command: the connection just ends, as it does
            // when E2B stops a sandbox.
            _ if shared.sandbox(&id).is_none() => {}
            None => {
                let _ = tx.send(end(-1, false, "signal: killed".into()));
                let _ = tx.send(envelope(0x02, b"{}".to_vec()));
            }
            Some(Ok(result)) => {
                let _ = tx.send(end(result.exit_code, true, format!("exit status {}", result.exit_code)));
                let _ = tx.send(envelope(0x02, b"{}".to_vec()));
            }
            Some(Err(Error::CommandTimeout { .. })) => {
                let _ = tx.send(ConnectError::new("deadline_exceeded", "context deadline exceeded").end_of_stream());
            }
            Some(Err(e)) => {
                let _ = tx.send(ConnectError::new("internal", e.to_string()).end_of_stream());
            }
        }
    });
    streaming_body(codec, rx)
}
