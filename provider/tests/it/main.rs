//! Integration tests of flagpole-provider.
