//! The YARN ApplicationMaster (`yarnflow appmaster`, launched by YARN).

pub mod doctor;
pub mod workers;
