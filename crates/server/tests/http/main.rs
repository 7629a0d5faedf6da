//! forgeai-server over real HTTP: the router on a loopback port, driven with reqwest. Every
//! scenario runs twice, with the store on SQLite and on PostgreSQL (a private throwaway
//! server, or a database on the server named by `FORGEAI_TEST_DATABASE_URL`).

mod api;
mod harness;
mod inngest;
mod openapi;
mod preview;
mod sessions;
mod sse;
mod uploads;

macro_rules! on_both_backends {
    ($($module:ident :: $scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let server = crate::harness::TestServer::start(crate::harness::Backend::Sqlite).await;
                    crate::$module::$scenario(&server).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let server = crate::harness::TestServer::start(crate::harness::Backend::Postgres).await;
                    crate::$module::$scenario(&server).await;
                }
            )*
        }
    };
}

on_both_backends!(
    api::projects_messages_and_runs,
    api::fragments,
    api::a_big_fragment_keeps_the_listing_small,
    api::rejected_requests_store_nothing,
    api::authentication,
    api::other_users_data_is_invisible,
    uploads::uploads,
    sse::realtime_resumes_without_loss_or_repeats,
    sse::realtime_reconnects_under_load,
    sse::realtime_streams_run_statuses,
    inngest::event_endpoint,
    inngest::inngest_sdk_sends_events,
    openapi::openapi_document,
    sessions::sessions_are_revoked_on_sign_out_and_expire,
    sessions::tokens_are_listed_and_revoked,
    sessions::metrics_need_a_token_or_their_own_listener,
    preview::previews_are_served_to_their_owner_only,
    preview::a_preview_cookie_ends_with_the_session_it_came_from,
    preview::a_public_preview_is_served_to_anyone,
);

#[tokio::test]
async fn realtime_resumes_on_another_node() {
    sse::realtime_resumes_on_another_node().await;
}
