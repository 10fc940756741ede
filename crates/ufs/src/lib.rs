//! ufs
