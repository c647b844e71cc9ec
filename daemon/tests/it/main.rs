//! Integration tests of the flagpole daemon, run in-process on free ports.
