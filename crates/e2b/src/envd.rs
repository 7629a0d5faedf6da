//! envd, the agent inside every E2B sandbox (port 49983): processes and directory listings over
//! Connect-RPC, file contents over its `/files` HTTP API.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};

use crate::connect::{self, RpcError, RpcTarget, transport};
use crate::proto::filesystem::{EntryInfo, ListDirRequest, ListDirResponse};
use crate::proto::process::process_event::{Event, data_event};
use crate::proto::process::{
    ProcessConfig, ProcessSelector, SendSignalRequest, SendSignalResponse, Signal, StartRequest, StartResponse,
    process_selector,
};

/// The sandbox user commands run as and files belong to (E2B's default user).
pub const USER: &str = "user";
/// How often envd should send keepalive events on a quiet stream (the SDKs ask for 50 s).
const KEEPALIVE_SECS: &str = "50";

/// What a process stream delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcessEvent {
    Started {
        pid: u32,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Ended {
        exit_code: i32,
        exited: bool,
        status: String,
        error: Option<String>,
    },
}

/// A client for one sandbox's envd.
#[derive(Clone)]
pub struct Envd {
    http: reqwest::Client,
    target: RpcTarget,
    request_timeout: Duration,
}

impl Envd {
    pub fn new(http: reqwest::Client, target: RpcTarget, request_timeout: Duration) -> Self {
        Envd {
            http,
            target,
            request_timeout,
        }
    }

    /// Runs `bash -l -c command` as the sandbox user and hands each event to `on_event` as it
    /// arrives; ends with the process's end, or the error that ended the stream.
    pub async fn run(
        &self,
        command: &str,
        cwd: &str,
        envs: &BTreeMap<String, String>,
        deadline: Duration,
        mut on_event: impl FnMut(ProcessEvent) + Send,
    ) -> Result<(), RpcError> {
        let request = StartRequest {
            process: Some(ProcessConfig {
                cmd: "/bin/bash".into(),
                args: vec!["-l".into(), "-c".into(), command.into()],
                envs: envs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                cwd: Some(cwd.into()),
            }),
            pty: None,
            tag: None,
            stdin: Some(false),
        };
        let mut headers = HeaderMap::new();
        headers.insert("Authorization", basic_auth(USER));
        headers.insert("Keepalive-Ping-Interval", HeaderValue::from_static(KEEPALIVE_SECS));
        let stream = connect::server_stream::<_, StartResponse>(
            &self.http,
            &self.target,
            "process.Process/Start",
            &request,
            headers,
            deadline,
        )
        .await?;
        futures::pin_mut!(stream);
        let mut ended = false;
        while let Some(message) = stream.next().await {
            let Some(event) = message?.event.and_then(|e| e.event) else {
                continue;
            };
            match event {
                Event::Start(start) => on_event(ProcessEvent::Started { pid: start.pid }),
                Event::Data(data) => match data.output {
                    Some(data_event::Output::Stdout(bytes)) => on_event(ProcessEvent::Stdout(bytes.to_vec())),
                    Some(data_event::Output::Stderr(bytes)) => on_event(ProcessEvent::Stderr(bytes.to_vec())),
                    Some(data_event::Output::Pty(bytes)) => on_event(ProcessEvent::Stdout(bytes.to_vec())),
                    None => {}
                },
                Event::End(end) => {
                    ended = true;
                    on_event(ProcessEvent::Ended {
                        exit_code: end.exit_code,
                        exited: end.exited,
                        status: end.status,
                        error: end.error,
                    });
                }
                Event::Keepalive(_) => {}
            }
        }
        if ended {
            Ok(())
        } else {
            Err(RpcError::Transport(
                "the process stream closed before the process ended".into(),
            ))
        }
    }

    /// Sends SIGKILL to a process (and so ends its stream).
    pub async fn kill_process(&self, pid: u32) -> Result<(), RpcError> {
        let request = SendSignalRequest {
            process: Some(ProcessSelector {
                selector: Some(process_selector::Selector::Pid(pid)),
            }),
            signal: Signal::Sigkill as i32,
        };
        connect::unary::<_, SendSignalResponse>(
            &self.http,
            &self.target,
            "process.Process/SendSignal",
            &request,
            self.request_timeout,
        )
        .await
        .map(|_| ())
    }

    /// `Filesystem/ListDir`: entries under `path`, `depth` levels down.
    pub async fn list_dir(&self, path: &str, depth: u32) -> Result<Vec<EntryInfo>, RpcError> {
        let request = ListDirRequest {
            path: path.into(),
            depth: depth.max(1),
        };
        let response: ListDirResponse = connect::unary(
            &self.http,
            &self.target,
            "filesystem.Filesystem/ListDir",
            &request,
            self.request_timeout,
        )
        .await?;
        Ok(response.entries)
    }

    /// `POST /files` with one multipart part per file (each named by its absolute path), which
    /// every envd version accepts; parent directories are created, files overwritten.
    pub async fn upload(&self, files: &[(String, Vec<u8>)]) -> Result<(), RpcError> {
        let mut form = reqwest::multipart::Form::new();
        for (path, contents) in files {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(contents.clone()).file_name(path.clone()),
            );
        }
        let mut query = vec![("username", USER.to_owned())];
        if let [(path, _)] = files {
            query.push(("path", path.clone()));
        }
        let response = self
            .http
            .post(format!("{}/files", self.target.base_url))
            .headers(self.target.headers.clone())
            .query(&query)
            .multipart(form)
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = response.bytes().await.map_err(transport)?;
        Err(http_error(status.as_u16(), &bytes))
    }

    /// `GET /files?path=`: the file's bytes, refusing more than `limit`.
    pub async fn download(&self, path: &str, limit: u64) -> Result<Result<Vec<u8>, u64>, RpcError> {
        let response = self
            .http
            .get(format!("{}/files", self.target.base_url))
            .headers(self.target.headers.clone())
            .query(&[("path", path), ("username", USER)])
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(transport)?;
            return Err(http_error(status.as_u16(), &bytes));
        }
        if let Some(length) = response.content_length().filter(|l| *l > limit) {
            return Ok(Err(length));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            body.extend_from_slice(&chunk.map_err(transport)?);
            if body.len() as u64 > limit {
                return Ok(Err(body.len() as u64));
            }
        }
        Ok(Ok(body))
    }
}

/// envd takes the user as HTTP basic auth with an empty password.
fn basic_auth(user: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
    HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn http_error(status: u16, bytes: &[u8]) -> RpcError {
    RpcError::Http {
        status,
        message: connect::answer_message(bytes, 500),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::process::{ProcessEvent as Proto, StartResponse};

    #[test]
    fn basic_auth_names_the_user_with_no_password() {
        assert_eq!(basic_auth("user"), "Basic dXNlcjo=");
    }

    #[test]
    fn protojson_follows_the_wire_rules() {
        // A zero exit code is absent; bytes are base64; unknown fields are ignored.
        let end: StartResponse =
            serde_json::from_str(r#"{"event":{"end":{"exited":true,"status":"exit status 0","newField":1}}}"#).unwrap();
        match end.event.and_then(|e: Proto| e.event) {
            Some(Event::End(end)) => assert_eq!((end.exit_code, end.exited), (0, true)),
            other => panic!("not an end event: {other:?}"),
        }
        let data: StartResponse = serde_json::from_str(r#"{"event":{"data":{"stdout":"aGk="}}}"#).unwrap();
        match data.event.and_then(|e| e.event) {
            Some(Event::Data(d)) => assert_eq!(d.output, Some(data_event::Output::Stdout(b"hi".to_vec()))),
            other => panic!("not a data event: {other:?}"),
        }
        // 64-bit sizes are strings on output and accepted either way on input.
        let entry: EntryInfo = serde_json::from_str(r#"{"name":"a","size":"12","type":"FILE_TYPE_FILE"}"#).unwrap();
        assert_eq!(entry.size, 12);
        let entry: EntryInfo = serde_json::from_str(r#"{"name":"a","size":12,"type":1}"#).unwrap();
        assert_eq!(entry.size, 12);
        assert_eq!(
            serde_json::to_value(&entry).unwrap(),
            serde_json::json!({"name":"a","size":"12","type":"FILE_TYPE_FILE"})
        );
        let request = StartRequest {
            stdin: Some(false),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"stdin": false})
        );
    }
}
