//! The collector's configuration file. (Being built.)
