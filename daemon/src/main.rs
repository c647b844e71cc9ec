//! `flagpole`: thin binary over the `flagpole` library.
fn main() {}
