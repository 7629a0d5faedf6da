//! Submitting a prompt is all or nothing: when the run cannot be started, the prompt (and the
//! project made for it) is taken back; when it starts, the run gets the stored message.

use std::sync::Mutex;

use async_trait::async_trait;
use forgeai_code_agent::{CodeAgentRequest, PromptTarget, RunStarter, StartError, SubmitError, submit_prompt};
use forgeai_store::Store;

/// Records what it is asked to start; fails while `down` is set.
#[derive(Default)]
struct Starter {
    down: Mutex<bool>,
    started: Mutex<Vec<CodeAgentRequest>>,
}

#[async_trait]
impl RunStarter for Starter {
    async fn start_run(&self, request: &CodeAgentRequest, key: Option<&str>) -> Result<String, StartError> {
        assert_eq!(
            key,
            request.message_id.as_deref(),
            "a prompt's run is keyed by its message"
        );
        if *self.down.lock().unwrap() {
            return Err(StartError("the engine is down".into()));
        }
        self.started.lock().unwrap().push(request.clone());
        Ok(format!("run-{}", self.started.lock().unwrap().len()))
    }
}

#[tokio::test]
async fn a_prompt_whose_run_cannot_start_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_default(dir.path()).await.unwrap();
    let (user, _) = store.create_user("alice").await.unwrap();
    let starter = Starter::default();

    let first = submit_prompt(
        &store,
        &starter,
        &user.id,
        PromptTarget::NewProject,
        "Build a page",
        None,
    )
    .await
    .unwrap();
    assert_eq!(first.run_id, "run-1");
    let started = starter.started.lock().unwrap().clone();
    assert_eq!(started[0].message_id.as_deref(), Some(first.message.id.as_str()));
    assert_eq!(started[0].project_id, first.project.id);

    *starter.down.lock().unwrap() = true;
    let error = submit_prompt(&store, &starter, &user.id, PromptTarget::NewProject, "Another", None)
        .await
        .unwrap_err();
    assert!(matches!(error, SubmitError::Start(_)), "{error}");
    assert_eq!(
        store.list_projects(&user.id).await.unwrap().len(),
        1,
        "the new project was taken back"
    );

    let project = PromptTarget::Project(&first.project.id);
    let error = submit_prompt(&store, &starter, &user.id, project, "Follow-up", None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("the engine is down"), "{error}");
    let messages = store.list_messages(&user.id, &first.project.id).await.unwrap().unwrap();
    assert_eq!(messages.len(), 1, "the follow-up was taken back: {messages:?}");

    *starter.down.lock().unwrap() = false;
    let missing = submit_prompt(&store, &starter, &user.id, PromptTarget::Project("nope"), "x", None)
        .await
        .unwrap_err();
    assert!(matches!(missing, SubmitError::NoProject(_)), "{missing}");
    let follow_up = submit_prompt(&store, &starter, &user.id, project, "Follow-up", None)
        .await
        .unwrap();
    assert_eq!(follow_up.project.id, first.project.id);
    assert_eq!(starter.started.lock().unwrap().len(), 2);
}
