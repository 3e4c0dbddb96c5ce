//! The RPC sequences errand uses, as the Go SDK makes them (`app.go`,
//! `image.go`, `secret.go`, `sandbox.go`): each a method of [`Client`].

use std::collections::HashMap;
use std::time::Duration;

use crate::proto::client as pb;
use crate::{Client, ModalError};

/// The long-poll `timeout` of streams (seconds).
pub const STREAM_TIMEOUT: f32 = 55.0;
/// The long-poll `timeout` of `SandboxWait` (seconds).
pub const WAIT_TIMEOUT: f32 = 10.0;

/// What a finished sandbox or image build reported.
pub type Outcome = pb::GenericResult;

fn status_of(r: &Outcome) -> pb::generic_result::GenericStatus {
    pb::generic_result::GenericStatus::try_from(r.status)
        .unwrap_or(pb::generic_result::GenericStatus::Unspecified)
}

/// The exit code of a finished sandbox (`getReturnCode`): TIMEOUT 124, TERMINATED 137.
pub fn return_code(r: &Outcome) -> i32 {
    use pb::generic_result::GenericStatus as S;
    match status_of(r) {
        S::Timeout => 124,
        S::Terminated => 137,
        _ => r.exitcode,
    }
}

/// Whether an environment variable's name is one Modal accepts in a Secret.
pub fn valid_env_key(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Client {
    /// `AppGetOrCreate`: the app's id; with `create` false, only a lookup.
    pub async fn app(&self, name: &str, create: bool) -> Result<String, ModalError> {
        let req = pb::AppGetOrCreateRequest {
            app_name: name.to_string(),
            environment_name: self.profile().environment.clone(),
            object_creation_type: if create {
                pb::ObjectCreationType::CreateIfMissing
            } else {
                pb::ObjectCreationType::Unspecified
            } as i32,
        };
        let resp = self
            .unary("AppGetOrCreate", req, |mut c, r| async move {
                c.app_get_or_create(r).await
            })
            .await?;
        non_empty("AppGetOrCreate", resp.app_id)
    }

    /// The image builder version: the profile's, else the environment's settings.
    pub async fn builder_version(&self) -> Result<String, ModalError> {
        if let Some(v) = &self.profile().image_builder_version {
            return Ok(v.clone());
        }
        let req = pb::EnvironmentGetOrCreateRequest {
            deployment_name: self.profile().environment.clone(),
            object_creation_type: pb::ObjectCreationType::Unspecified as i32,
        };
        let resp = self
            .unary("EnvironmentGetOrCreate", req, |mut c, r| async move {
                c.environment_get_or_create(r).await
            })
            .await?;
        Ok(resp
            .metadata
            .and_then(|m| m.settings)
            .map(|s| s.image_builder_version)
            .unwrap_or_default())
    }

    /// An image from Dockerfile commands (`FROM <tag>` for a registry tag),
    /// built if needed, followed to the end of its build; `progress` gets
    /// each line of the build's log.
    pub async fn image(
        &self,
        app_id: &str,
        dockerfile_commands: Vec<String>,
        force_build: bool,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String, ModalError> {
        let builder_version = self.builder_version().await?;
        let req = pb::ImageGetOrCreateRequest {
            app_id: app_id.to_string(),
            image: Some(pb::Image {
                dockerfile_commands,
                ..Default::default()
            }),
            builder_version,
            force_build,
            ..Default::default()
        };
        let resp = self
            .unary("ImageGetOrCreate", req, |mut c, r| async move {
                c.image_get_or_create(r).await
            })
            .await?;
        let image_id = non_empty("ImageGetOrCreate", resp.image_id)?;
        let mut result = resp
            .result
            .filter(|r| status_of(r) != pb::generic_result::GenericStatus::Unspecified);
        let mut last_entry_id = String::new();
        let mut reopened = 0;
        while result.is_none() {
            let req = self
                .stream_request(pb::ImageJoinStreamingRequest {
                    image_id: image_id.clone(),
                    timeout: STREAM_TIMEOUT,
                    last_entry_id: last_entry_id.clone(),
                    include_logs_for_finished: false,
                })
                .await?;
            let mut stream = match self.stub().image_join_streaming(req).await {
                Ok(s) => s.into_inner(),
                Err(s) if crate::client::is_transient(s.code()) && reopened < 10 => {
                    reopened += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(s) => return Err(ModalError::rpc("ImageJoinStreaming", &s)),
            };
            loop {
                match stream.message().await {
                    Ok(Some(msg)) => {
                        if !msg.entry_id.is_empty() {
                            last_entry_id = msg.entry_id.clone();
                        }
                        for l in &msg.task_logs {
                            for line in l.data.lines() {
                                progress(line);
                            }
                        }
                        if let Some(r) = msg.result.filter(|r| {
                            status_of(r) != pb::generic_result::GenericStatus::Unspecified
                        }) {
                            result = Some(r);
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(s) if crate::client::is_transient(s.code()) && reopened < 10 => {
                        reopened += 1;
                        break;
                    }
                    Err(s) => return Err(ModalError::rpc("ImageJoinStreaming", &s)),
                }
            }
        }
        let r = result.unwrap_or_default();
        use pb::generic_result::GenericStatus as S;
        match status_of(&r) {
            S::Success => Ok(image_id),
            S::Failure | S::MemoryManagerEviction => Err(ModalError::Remote(format!(
                "the Modal image {image_id} failed to build: {}",
                r.exception
            ))),
            S::Terminated => Err(ModalError::Remote(format!(
                "the build of the Modal image {image_id} was terminated"
            ))),
            S::Timeout => Err(ModalError::Remote(format!(
                "the build of the Modal image {image_id} timed out"
            ))),
            other => Err(ModalError::Remote(format!(
                "the build of the Modal image {image_id} ended with an unknown status ({other:?})"
            ))),
        }
    }

    /// An ephemeral Secret holding `env` (`SecretGetOrCreate`, EPHEMERAL).
    pub async fn ephemeral_secret(&self, env: &[(String, String)]) -> Result<String, ModalError> {
        let mut env_dict = HashMap::new();
        for (k, v) in env {
            if !valid_env_key(k) {
                return Err(ModalError::Config(format!(
                    "the environment variable name {k:?} cannot go into a Modal Secret"
                )));
            }
            env_dict.insert(k.clone(), v.clone());
        }
        let req = pb::SecretGetOrCreateRequest {
            object_creation_type: pb::ObjectCreationType::Ephemeral as i32,
            env_dict,
            environment_name: self.profile().environment.clone(),
            ..Default::default()
        };
        let resp = self
            .unary("SecretGetOrCreate", req, |mut c, r| async move {
                c.secret_get_or_create(r).await
            })
            .await?;
        non_empty("SecretGetOrCreate", resp.secret_id)
    }

    /// `SandboxCreate`: the new sandbox's id.
    pub async fn sandbox_create(
        &self,
        app_id: &str,
        definition: pb::Sandbox,
        tags: &[(&str, &str)],
    ) -> Result<String, ModalError> {
        let req = pb::SandboxCreateRequest {
            app_id: app_id.to_string(),
            definition: Some(definition),
            tags: tags
                .iter()
                .map(|(k, v)| pb::SandboxTag {
                    tag_name: k.to_string(),
                    tag_value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        };
        let resp = self
            .unary("SandboxCreate", req, |mut c, r| async move {
                c.sandbox_create(r).await
            })
            .await?;
        non_empty("SandboxCreate", resp.sandbox_id)
    }

    /// The sandbox's task id, polled every 0.5 s (at most 600 times) until
    /// it is scheduled; an error if it finished first.
    pub async fn task_id(&self, sandbox_id: &str) -> Result<String, ModalError> {
        for _ in 0..600 {
            let req = pb::SandboxGetTaskIdRequest {
                sandbox_id: sandbox_id.to_string(),
                timeout: None,
                wait_until_ready: false,
            };
            let resp = self
                .unary("SandboxGetTaskId", req, |mut c, r| async move {
                    c.sandbox_get_task_id(r).await
                })
                .await?;
            if let Some(r) = resp.task_result {
                return Err(ModalError::Remote(format!(
                    "the Modal sandbox {sandbox_id} already completed ({:?}{})",
                    status_of(&r),
                    if r.exception.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.exception)
                    }
                )));
            }
            if let Some(t) = resp.task_id.filter(|t| !t.is_empty()) {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(ModalError::Remote(format!(
            "the Modal sandbox {sandbox_id} was not scheduled in 5 minutes"
        )))
    }

    /// One `SandboxWait` with `timeout` seconds (0: a poll): the result once finished.
    pub async fn sandbox_wait(
        &self,
        sandbox_id: &str,
        timeout: f32,
    ) -> Result<Option<Outcome>, ModalError> {
        let req = pb::SandboxWaitRequest {
            sandbox_id: sandbox_id.to_string(),
            timeout,
        };
        let resp = self
            .unary("SandboxWait", req, |mut c, r| async move {
                c.sandbox_wait(r).await
            })
            .await?;
        Ok(resp
            .result
            .filter(|r| status_of(r) != pb::generic_result::GenericStatus::Unspecified))
    }

    /// `SandboxTerminate`.
    pub async fn sandbox_terminate(&self, sandbox_id: &str) -> Result<(), ModalError> {
        let req = pb::SandboxTerminateRequest {
            sandbox_id: sandbox_id.to_string(),
        };
        self.unary("SandboxTerminate", req, |mut c, r| async move {
            c.sandbox_terminate(r).await
        })
        .await?;
        Ok(())
    }

    /// Every running sandbox of `app_id` with all of `tags`, paging backwards
    /// by creation time until an empty page.
    pub async fn sandbox_list(
        &self,
        app_id: &str,
        tags: &[(&str, &str)],
    ) -> Result<Vec<pb::SandboxInfo>, ModalError> {
        let mut out = Vec::new();
        let mut before = 0.0;
        loop {
            let req = pb::SandboxListRequest {
                app_id: app_id.to_string(),
                before_timestamp: before,
                environment_name: self.profile().environment.clone(),
                include_finished: false,
                tags: tags
                    .iter()
                    .map(|(k, v)| pb::SandboxTag {
                        tag_name: k.to_string(),
                        tag_value: v.to_string(),
                    })
                    .collect(),
            };
            let resp = self
                .unary("SandboxList", req, |mut c, r| async move {
                    c.sandbox_list(r).await
                })
                .await?;
            let Some(last) = resp.sandboxes.last() else {
                return Ok(out);
            };
            if before != 0.0 && last.created_at >= before {
                return Err(ModalError::Protocol {
                    rpc: "SandboxList",
                    why: "a page did not go backwards".into(),
                });
            }
            before = last.created_at;
            out.extend(resp.sandboxes);
            if out.len() > 100_000 {
                return Err(ModalError::Protocol {
                    rpc: "SandboxList",
                    why: "more than 100000 sandboxes".into(),
                });
            }
        }
    }
}

fn non_empty(rpc: &'static str, id: String) -> Result<String, ModalError> {
    if id.is_empty() {
        Err(ModalError::Protocol {
            rpc,
            why: "no id".into(),
        })
    } else {
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys() {
        for k in ["A", "_x", "ANTHROPIC_API_KEY", "a1"] {
            assert!(valid_env_key(k), "{k}");
        }
        for k in ["", "1A", "A-B", "A B", "é"] {
            assert!(!valid_env_key(k), "{k}");
        }
    }

    #[test]
    fn return_codes() {
        use pb::generic_result::GenericStatus as S;
        let r = |s: S, code| pb::GenericResult {
            status: s as i32,
            exitcode: code,
            ..Default::default()
        };
        assert_eq!(return_code(&r(S::Timeout, 0)), 124);
        assert_eq!(return_code(&r(S::Terminated, 0)), 137);
        assert_eq!(return_code(&r(S::Success, 0)), 0);
        assert_eq!(return_code(&r(S::Failure, 3)), 3);
    }
}
