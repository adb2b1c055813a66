//! The YARN ApplicationMaster (`yarnflow appmaster`, launched by YARN).

pub mod workers;
