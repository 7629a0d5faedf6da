//! envd's messages, generated from E2B's `.proto` files: prost types for the binary codec and
//! pbjson serde impls for protojson (lowerCamelCase names, defaults left out, 64-bit integers
//! as strings, bytes as base64, enums by name; both spellings accepted on input).

#![allow(clippy::all, missing_docs)]

pub mod process {
    include!(concat!(env!("OUT_DIR"), "/process.rs"));
    include!(concat!(env!("OUT_DIR"), "/process.serde.rs"));
}

pub mod filesystem {
    include!(concat!(env!("OUT_DIR"), "/filesystem.rs"));
    include!(concat!(env!("OUT_DIR"), "/filesystem.serde.rs"));
}
