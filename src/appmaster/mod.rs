//! The YARN ApplicationMaster (`yarnflow appmaster`, launched by YARN).

pub mod config;
pub mod doctor;
pub mod job_am;
pub mod launch;
pub mod workers;
