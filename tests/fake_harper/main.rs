//! Placeholder: the fake Harper server is being written.
fn main() {}
