//! ApplicationClientProtocol (SIMPLE auth on non-secure clusters): the calls the REST API lacks.

use super::ids::{ApplicationAttemptId, ApplicationId};
use super::{CLIENT_PROTOCOL, YarnError};
use crate::hadoop::ipc::{Auth, IpcClient, IpcConfig, Token};
use crate::hadoop::proto::yarn as pb;

pub struct AppClient {
    ipc: IpcClient,
}

/// The parts of an application report the REST API does not give.
#[derive(Debug, Clone)]
pub struct AppReportTokens {
    /// Only for unmanaged AMs: the token their AM uses.
    pub am_rm_token: Option<Token>,
    pub current_attempt: Option<ApplicationAttemptId>,
}

impl AppClient {
    /// `rm_address` is `yarn.resourcemanager.address`; `user` the caller's name.
    pub fn new(rm_address: &str, user: &str) -> AppClient {
        AppClient {
            ipc: IpcClient::new(IpcConfig::new(
                rm_address,
                CLIENT_PROTOCOL,
                Auth::Simple {
                    user: user.to_string(),
                },
            )),
        }
    }

    /// `getApplicationReport` (only the fields the REST report lacks).
    pub async fn get_application_report(
        &self,
        app: ApplicationId,
    ) -> Result<AppReportTokens, YarnError> {
        let r: pb::GetApplicationReportResponseProto = self
            .ipc
            .call(
                "getApplicationReport",
                &pb::GetApplicationReportRequestProto {
                    application_id: Some(app.to_proto()),
                },
            )
            .await?;
        let report = r
            .application_report
            .ok_or_else(|| YarnError::Protocol(format!("no report for {app}")))?;
        Ok(AppReportTokens {
            am_rm_token: report.am_rm_token.as_ref().map(Token::from_proto),
            current_attempt: report
                .current_application_attempt_id
                .as_ref()
                .map(ApplicationAttemptId::from_proto),
        })
    }

    /// `failApplicationAttempt`: YARN's clean way to force a new attempt.
    pub async fn fail_application_attempt(
        &self,
        attempt: ApplicationAttemptId,
    ) -> Result<(), YarnError> {
        let _: pb::FailApplicationAttemptResponseProto = self
            .ipc
            .call(
                "failApplicationAttempt",
                &pb::FailApplicationAttemptRequestProto {
                    application_attempt_id: Some(attempt.to_proto()),
                },
            )
            .await?;
        Ok(())
    }
}
