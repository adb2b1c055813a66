//! YARN identifiers with Hadoop's string forms (`ApplicationId.toString`, `ContainerId.toString`).

use std::fmt;
use std::str::FromStr;

use crate::hadoop::proto::yarn as pb;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a valid {kind} (expected {expected})")]
pub struct IdError {
    pub input: String,
    pub kind: &'static str,
    pub expected: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApplicationId {
    pub cluster_timestamp: i64,
    pub id: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApplicationAttemptId {
    pub application: ApplicationId,
    pub attempt: i32,
}

/// `id` = epoch << 40 | sequence, as YARN encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId {
    pub attempt: ApplicationAttemptId,
    pub id: i64,
}

impl fmt::Display for ApplicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "application_{}_{:04}", self.cluster_timestamp, self.id)
    }
}

impl fmt::Display for ApplicationAttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "appattempt_{}_{:04}_{:06}",
            self.application.cluster_timestamp, self.application.id, self.attempt
        )
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("container_")?;
        let epoch = self.id >> 40;
        if epoch > 0 {
            write!(f, "e{epoch:02}_")?;
        }
        write!(
            f,
            "{}_{:04}_{:02}_{:06}",
            self.attempt.application.cluster_timestamp,
            self.attempt.application.id,
            self.attempt.attempt,
            self.id & 0xff_ffff_ffff
        )
    }
}

fn numbers<'a>(s: &'a str, prefix: &str) -> Option<Vec<&'a str>> {
    let rest = s.strip_prefix(prefix)?;
    let parts: Vec<&str> = rest.split('_').collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .then_some(parts)
}

impl FromStr for ApplicationId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = || IdError {
            input: s.to_string(),
            kind: "application id",
            expected: "application_<cluster timestamp>_<number>",
        };
        match numbers(s, "application_").as_deref() {
            Some([ts, id]) => Ok(ApplicationId {
                cluster_timestamp: ts.parse().map_err(|_| err())?,
                id: id.parse().map_err(|_| err())?,
            }),
            _ => Err(err()),
        }
    }
}

impl FromStr for ApplicationAttemptId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = || IdError {
            input: s.to_string(),
            kind: "application attempt id",
            expected: "appattempt_<cluster timestamp>_<app>_<attempt>",
        };
        match numbers(s, "appattempt_").as_deref() {
            Some([ts, id, attempt]) => Ok(ApplicationAttemptId {
                application: ApplicationId {
                    cluster_timestamp: ts.parse().map_err(|_| err())?,
                    id: id.parse().map_err(|_| err())?,
                },
                attempt: attempt.parse().map_err(|_| err())?,
            }),
            _ => Err(err()),
        }
    }
}

impl FromStr for ContainerId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = || IdError {
            input: s.to_string(),
            kind: "container id",
            expected: "container_[e<epoch>_]<cluster timestamp>_<app>_<attempt>_<seq>",
        };
        let rest = s.strip_prefix("container_").ok_or_else(err)?;
        let (epoch, rest) = match rest.strip_prefix('e') {
            Some(r) => {
                let (e, r) = r.split_once('_').ok_or_else(err)?;
                (e.parse::<i64>().map_err(|_| err())?, r)
            }
            None => (0, rest),
        };
        match numbers(&format!("x_{rest}"), "x_").as_deref() {
            Some([ts, app, attempt, seq]) => Ok(ContainerId {
                attempt: ApplicationAttemptId {
                    application: ApplicationId {
                        cluster_timestamp: ts.parse().map_err(|_| err())?,
                        id: app.parse().map_err(|_| err())?,
                    },
                    attempt: attempt.parse().map_err(|_| err())?,
                },
                id: (epoch << 40) | seq.parse::<i64>().map_err(|_| err())?,
            }),
            _ => Err(err()),
        }
    }
}

impl ApplicationId {
    pub(crate) fn to_proto(self) -> pb::ApplicationIdProto {
        pb::ApplicationIdProto {
            id: Some(self.id),
            cluster_timestamp: Some(self.cluster_timestamp),
        }
    }
    pub(crate) fn from_proto(p: &pb::ApplicationIdProto) -> ApplicationId {
        ApplicationId {
            cluster_timestamp: p.cluster_timestamp.unwrap_or_default(),
            id: p.id.unwrap_or_default(),
        }
    }
}

impl ApplicationAttemptId {
    pub(crate) fn to_proto(self) -> pb::ApplicationAttemptIdProto {
        pb::ApplicationAttemptIdProto {
            application_id: Some(self.application.to_proto()),
            attempt_id: Some(self.attempt),
        }
    }
    pub(crate) fn from_proto(p: &pb::ApplicationAttemptIdProto) -> ApplicationAttemptId {
        ApplicationAttemptId {
            application: p
                .application_id
                .as_ref()
                .map(ApplicationId::from_proto)
                .unwrap_or(ApplicationId {
                    cluster_timestamp: 0,
                    id: 0,
                }),
            attempt: p.attempt_id.unwrap_or_default(),
        }
    }
}

impl ContainerId {
    pub(crate) fn to_proto(self) -> pb::ContainerIdProto {
        pb::ContainerIdProto {
            app_id: Some(self.attempt.application.to_proto()),
            app_attempt_id: Some(self.attempt.to_proto()),
            id: Some(self.id),
        }
    }
    pub(crate) fn from_proto(p: &pb::ContainerIdProto) -> ContainerId {
        ContainerId {
            attempt: p
                .app_attempt_id
                .as_ref()
                .map(ApplicationAttemptId::from_proto)
                .unwrap_or(ApplicationAttemptId {
                    application: ApplicationId {
                        cluster_timestamp: 0,
                        id: 0,
                    },
                    attempt: 0,
                }),
            id: p.id.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hadoop_spellings_round_trip() {
        for s in [
            "container_1700000000000_0001_01_000002",
            "container_e17_1700000000000_0001_01_000002",
            "container_1700000000000_12345_100_1234567",
        ] {
            let c: ContainerId = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
        }
        let c: ContainerId = "container_e17_1700000000000_0001_01_000002"
            .parse()
            .unwrap();
        assert_eq!(c.id >> 40, 17);
        assert_eq!(
            c.attempt.to_string(),
            "appattempt_1700000000000_0001_000001"
        );
        assert_eq!(
            c.attempt.application.to_string(),
            "application_1700000000000_0001"
        );
        let a: ApplicationAttemptId = "appattempt_1700000000000_0001_000002".parse().unwrap();
        assert_eq!(a.attempt, 2);
        for bad in [
            "container_",
            "container_x_1_2_3",
            "application_1",
            "appattempt_1_2",
            "",
        ] {
            assert!(bad.parse::<ContainerId>().is_err());
            assert!(bad.parse::<ApplicationId>().is_err());
        }
        let e = "nope".parse::<ApplicationId>().unwrap_err().to_string();
        assert!(e.contains("'nope'") && e.contains("application_"), "{e}");
    }
}
