//! Log inspection across attempts and containers (`yarnflow logs`).

pub mod timeline;
pub mod yarn;
