//! Integration tests of loadgen.
