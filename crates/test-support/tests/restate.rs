//! The test restate-server comes up, answers queries, and comes back after SIGKILL.

use forgeai_test_support::TestRestate;

#[tokio::test]
async fn a_test_restate_server_survives_sigkill() {
    let mut restate = TestRestate::start().await;
    assert_eq!(restate.query("SELECT id FROM sys_invocation").await, Ok(Vec::new()));
    let health = reqwest::get(format!("{}/health", restate.admin_url())).await.unwrap();
    assert!(health.status().is_success());
    restate.kill();
    assert!(restate.query("SELECT 1").await.is_err(), "killed means down");
    restate.resume().await;
    assert_eq!(restate.query("SELECT id FROM sys_invocation").await, Ok(Vec::new()));
    assert!(restate.base_dir().exists());
}
