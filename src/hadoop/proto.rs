//! The only place Hadoop's generated protobuf types are included. They stay inside
//! `crate::hadoop`; the rest of yarnflow sees domain types.
#![allow(clippy::all, missing_docs, dead_code)]

pub mod common {
    include!(concat!(env!("OUT_DIR"), "/hadoop.common.rs"));
}

pub mod yarn {
    include!(concat!(env!("OUT_DIR"), "/hadoop.yarn.rs"));
}
