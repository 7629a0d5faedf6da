//! The web UI's API types are the ones generated from this server's OpenAPI document: the
//! server's unit test keeps `ui/openapi.json` current, and this one runs the UI's check that
//! `ui/src/api.gen.ts` is what openapi-typescript makes of it.

use std::path::Path;
use std::process::Command;

#[test]
fn the_ui_api_types_are_generated_from_the_openapi_document() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui");
    assert!(
        ui.join("node_modules/.bin/openapi-typescript").exists(),
        "the UI's packages are missing: run scripts/setup.sh"
    );
    let output = Command::new("node")
        .arg("tests/api-types.mjs")
        .current_dir(&ui)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
