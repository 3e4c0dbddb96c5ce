//! The task command router: exec in a running sandbox, its stdio and its
//! exit, as the Go SDK's `task_command_router_client.go` does it. Calls carry
//! only `authorization: Bearer <jwt>`; on `Unauthenticated` the access is
//! fetched again (when the JWT is under 30 s from expiring) and the call is
//! retried once; transient codes get 10 retries from 10 ms, doubling.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::Code;

use crate::client::{is_transient, jwt_exp};
use crate::proto::client as pb;
use crate::proto::task_command_router as tcr;
use crate::proto::task_command_router::task_command_router_client::TaskCommandRouterClient;
use crate::{Client, Endpoint, ModalError};

const ROUTER_RETRIES: u32 = 10;
/// The most bytes of stdin sent in one write.
pub const STDIN_CHUNK: usize = 256 << 10;

struct Access {
    jwt: String,
    exp: Option<u64>,
}

/// A task's command router.
pub struct Router {
    client: Arc<Client>,
    task_id: String,
    channel: Channel,
    access: Mutex<Access>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// How an exec ended: `code`, or `128 + signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecExit {
    /// Its exit code.
    pub code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
}

impl Router {
    /// `TaskGetCommandRouterAccess` and a channel to the router it names.
    pub async fn open(client: Arc<Client>, task_id: &str) -> Result<Router, ModalError> {
        let (jwt, exp, url) = Self::fetch_access(&client, task_id).await?;
        let ep = Endpoint::parse(&url).map_err(|e| ModalError::Protocol {
            rpc: "TaskGetCommandRouterAccess",
            why: e.to_string(),
        })?;
        if !ep.tls {
            return Err(ModalError::Protocol {
                rpc: "TaskGetCommandRouterAccess",
                why: format!("the router URL {url} is not https"),
            });
        }
        // Plaintext only when the API itself is local, as the Go SDK (`isLocalhost`).
        let tls = !client.endpoint().is_localhost();
        let uri = Endpoint { tls, ..ep }.uri();
        let channel = crate::client::channel(&uri, tls)?;
        Ok(Router {
            client,
            task_id: task_id.to_string(),
            channel,
            access: Mutex::new(Access { jwt, exp }),
        })
    }

    async fn fetch_access(
        client: &Client,
        task_id: &str,
    ) -> Result<(String, Option<u64>, String), ModalError> {
        let req = pb::TaskGetCommandRouterAccessRequest {
            task_id: task_id.to_string(),
        };
        let resp = client
            .unary("TaskGetCommandRouterAccess", req, |mut c, r| async move {
                c.task_get_command_router_access(r).await
            })
            .await?;
        let exp = jwt_exp(&resp.jwt).map_err(|why| ModalError::Protocol {
            rpc: "TaskGetCommandRouterAccess",
            why: format!("the router's JWT is {why}"),
        })?;
        Ok((resp.jwt, exp, resp.url))
    }

    /// The task it serves.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    fn stub(&self) -> TaskCommandRouterClient<Channel> {
        TaskCommandRouterClient::new(self.channel.clone())
            .max_decoding_message_size(crate::client::MAX_MESSAGE)
            .max_encoding_message_size(crate::client::MAX_MESSAGE)
    }

    async fn request<T>(&self, msg: T) -> Result<tonic::Request<T>, ModalError> {
        let jwt = self.access.lock().await.jwt.clone();
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {jwt}")
                .parse()
                .map_err(|_| ModalError::Protocol {
                    rpc: "TaskGetCommandRouterAccess",
                    why: "the JWT is not a header value".into(),
                })?,
        );
        Ok(r)
    }

    /// After `Unauthenticated`: new access if the JWT is about to expire.
    async fn refresh_if_expiring(&self) -> Result<(), ModalError> {
        let mut a = self.access.lock().await;
        if a.exp.is_none_or(|exp| exp < unix_now() + 30) {
            let (jwt, exp, _) = Self::fetch_access(&self.client, &self.task_id).await?;
            *a = Access { jwt, exp };
        }
        Ok(())
    }

    /// A call with the router's auth and retries (`callWithAuthRetry`).
    async fn call<Q, R, F, Fut>(&self, rpc: &'static str, msg: Q, call: F) -> Result<R, ModalError>
    where
        Q: Clone,
        F: Fn(TaskCommandRouterClient<Channel>, tonic::Request<Q>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let (mut retries, mut reauthed) = (0, false);
        let mut backoff = Duration::from_millis(10);
        loop {
            let r = self.request(msg.clone()).await?;
            match call(self.stub(), r).await {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(s) if s.code() == Code::Unauthenticated && !reauthed => {
                    reauthed = true;
                    self.refresh_if_expiring().await?;
                }
                Err(s) if is_transient(s.code()) && retries < ROUTER_RETRIES => {
                    retries += 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(s) => return Err(ModalError::rpc(rpc, &s)),
            }
        }
    }

    /// `TaskExecStart` of `args` under `exec_id` (its idempotency key).
    pub async fn exec_start(
        &self,
        exec_id: &str,
        args: Vec<String>,
        workdir: Option<String>,
        secret_ids: Vec<String>,
        timeout_secs: Option<u32>,
    ) -> Result<(), ModalError> {
        let total: usize = args.iter().map(String::len).sum();
        if total > 65536 {
            return Err(ModalError::Config(format!(
                "the command's arguments total {total} bytes, more than Modal's 65536"
            )));
        }
        let req = tcr::TaskExecStartRequest {
            task_id: self.task_id.clone(),
            exec_id: exec_id.to_string(),
            command_args: args,
            stdout_config: tcr::TaskExecStdoutConfig::Pipe as i32,
            stderr_config: tcr::TaskExecStderrConfig::Pipe as i32,
            timeout_secs,
            workdir,
            secret_ids,
            ..Default::default()
        };
        self.call("TaskExecStart", req, |mut c, r| async move {
            c.task_exec_start(r).await
        })
        .await?;
        Ok(())
    }

    /// Copies the exec's `fd` into `out` from its start, reopening the stream
    /// at the bytes received after an error, until a clean end (its end of output).
    pub async fn read_output(
        &self,
        exec_id: &str,
        fd: tcr::TaskExecStdioFileDescriptor,
        mut out: impl tokio::io::AsyncWrite + Unpin,
    ) -> Result<u64, ModalError> {
        let mut offset = 0u64;
        let mut failures = 0u32;
        let mut reauthed = false;
        loop {
            let req = self
                .request(tcr::TaskExecStdioReadRequest {
                    task_id: self.task_id.clone(),
                    exec_id: exec_id.to_string(),
                    offset,
                    file_descriptor: fd as i32,
                })
                .await?;
            let err = match self.stub().task_exec_stdio_read(req).await {
                Ok(s) => {
                    let mut s = s.into_inner();
                    loop {
                        match s.message().await {
                            Ok(Some(m)) => {
                                failures = 0;
                                offset += m.data.len() as u64;
                                if out.write_all(&m.data).await.is_err() {
                                    // Nobody reads any more: stop quietly.
                                    return Ok(offset);
                                }
                            }
                            Ok(None) => {
                                let _ = out.shutdown().await;
                                return Ok(offset);
                            }
                            Err(e) => break e,
                        }
                    }
                }
                Err(e) => e,
            };
            if err.code() == Code::Unauthenticated && !reauthed {
                reauthed = true;
                self.refresh_if_expiring().await?;
                continue;
            }
            if !is_transient(err.code()) || failures >= ROUTER_RETRIES {
                return Err(ModalError::rpc("TaskExecStdioRead", &err));
            }
            failures += 1;
            tracing::debug!(
                "Modal exec output stream broke at byte {offset} ({}): reopening",
                err.message()
            );
            tokio::time::sleep(Duration::from_millis(10 << failures.min(6))).await;
        }
    }

    /// Writes all of `data` to the exec's stdin from `offset` 0, then closes it.
    pub async fn write_stdin(&self, exec_id: &str, data: &[u8]) -> Result<(), ModalError> {
        let mut offset = 0u64;
        for chunk in data.chunks(STDIN_CHUNK) {
            let req = tcr::TaskExecStdinWriteRequest {
                task_id: self.task_id.clone(),
                exec_id: exec_id.to_string(),
                offset,
                data: chunk.to_vec(),
                eof: false,
            };
            self.call("TaskExecStdinWrite", req, |mut c, r| async move {
                c.task_exec_stdin_write(r).await
            })
            .await?;
            offset += chunk.len() as u64;
        }
        let req = tcr::TaskExecStdinWriteRequest {
            task_id: self.task_id.clone(),
            exec_id: exec_id.to_string(),
            offset,
            data: Vec::new(),
            eof: true,
        };
        self.call("TaskExecStdinWrite", req, |mut c, r| async move {
            c.task_exec_stdin_write(r).await
        })
        .await?;
        Ok(())
    }

    /// `TaskExecWait` (60 s per call), repeated every second until the exec ends.
    pub async fn exec_wait(&self, exec_id: &str) -> Result<ExecExit, ModalError> {
        loop {
            let req = tcr::TaskExecWaitRequest {
                task_id: self.task_id.clone(),
                exec_id: exec_id.to_string(),
            };
            let res = self
                .call("TaskExecWait", req, |mut c, mut r| async move {
                    r.set_timeout(Duration::from_secs(60));
                    c.task_exec_wait(r).await
                })
                .await;
            match res {
                Ok(tcr::TaskExecWaitResponse {
                    exit_status: Some(s),
                }) => {
                    use tcr::task_exec_wait_response::ExitStatus;
                    return Ok(match s {
                        ExitStatus::Code(c) => ExecExit {
                            code: Some(c),
                            signal: None,
                        },
                        ExitStatus::Signal(s) => ExecExit {
                            code: None,
                            signal: Some(s),
                        },
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == Some(crate::ErrorKind::Service) => {}
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
