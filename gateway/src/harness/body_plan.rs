//! The pipeline's body plan as a route is built: which phases run, which
//! bodies are buffered and up to what size, what a larger response body
//! does; and a config with mistakes in several routes reported whole.

use super::build;
use crate::pipeline::{BodyPlan, ResponseBody, ResponsePlan};

/// A runtime with one route `r` (no upstream needed: `respond` answers, or
/// the entries given do) whose plugins are `entries` (TOML), under
/// `max_request_body`.
async fn plan_of(max_request_body: &str, entries: &str) -> crate::runtime::Runtime {
    let text = format!(
        "[server]\nmax_request_body = \"{max_request_body}\"\n[upstreams.u]\ntargets = [\"127.0.0.1:9\"]\n[[routes]]\nname = \"r\"\npath = \"/r\"\nupstream = \"u\"\n{entries}"
    );
    build(&text, None)
        .await
        .unwrap_or_else(|e| panic!("builds: {e}"))
}

const XML_BOTH_WAYS: &str = "[[routes.plugins]]\nplugin = \"xml-json\"\nmax_body = \"4KiB\"\nconfig = { request = \"xml-to-json\", response = \"json-to-xml\" }\n";
const KEY_AUTH: &str = "[[routes.plugins]]\nplugin = \"key-auth\"\n";
const RESPONSE_HEADERS: &str = "[[routes.plugins]]\nplugin = \"headers\"\nconfig = { response = { set = { \"x-a\" = \"1\" } } }\n";

#[tokio::test]
async fn a_pipeline_without_body_readers_buffers_nothing() {
    let runtime = plan_of("1MiB", &format!("{KEY_AUTH}{RESPONSE_HEADERS}")).await;
    let plan = *runtime.routes[0].pipeline.plan();
    assert_eq!(
        plan,
        BodyPlan {
            request_phase: true,
            request_body: None,
            response: ResponsePlan {
                hooks: true,
                body: None,
            },
        }
    );
    assert!(plan.any_phase());
}

#[tokio::test]
async fn an_empty_pipeline_has_no_phase() {
    let runtime = plan_of("1MiB", "").await;
    let plan = runtime.routes[0].pipeline.plan();
    assert_eq!(*plan, BodyPlan::default());
    assert!(!plan.any_phase());
}

#[tokio::test]
async fn body_readers_buffer_up_to_the_smallest_cap() {
    let runtime = plan_of("1MiB", XML_BOTH_WAYS).await;
    let plan = runtime.routes[0].pipeline.plan();
    assert_eq!(plan.request_body, Some(4096));
    assert_eq!(
        plan.response.body,
        Some(ResponseBody {
            cap: 4096,
            large_passes: false,
        })
    );
    // The server's limit is smaller than the plugin's: it caps the buffer.
    let runtime = plan_of("1KiB", XML_BOTH_WAYS).await;
    let plan = runtime.routes[0].pipeline.plan();
    assert_eq!(plan.request_body, Some(1024));
    assert_eq!(plan.response.body.map(|b| b.cap), Some(4096));
}

#[tokio::test]
async fn the_response_phase_after_an_answer_is_that_of_the_entries_before_it() {
    // key-auth answers (refuses) at index 1; only entry 0 then runs its
    // response hook, and it reads no body.
    let entries = format!("{RESPONSE_HEADERS}{KEY_AUTH}{XML_BOTH_WAYS}");
    let runtime = plan_of("1MiB", &entries).await;
    let pipeline = &runtime.routes[0].pipeline;
    assert!(pipeline.plan().response.body.is_some());
    assert_eq!(
        pipeline.response_plan(1),
        ResponsePlan {
            hooks: true,
            body: None,
        }
    );
    assert_eq!(pipeline.response_plan(0), ResponsePlan::default());
    assert_eq!(pipeline.response_plan(3), pipeline.plan().response);
}

#[tokio::test]
async fn mistakes_in_several_routes_are_reported_in_one_run() {
    let text = "[upstreams.backend]\ntargets = [\"127.0.0.1:9\"]\n[[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = \"backnd\"\n[[routes]]\nname = \"b\"\npath = \"/b/:id\"\nupstream = \"backend\"\n[[routes]]\nname = \"c\"\npath = \"/c\"\nupstream = \"backend\"\n[[routes.plugins]]\nplugin = \"key-auht\"\n";
    let err = super::build_error(text).await.to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!(
        lines[0],
        "t.toml:6:12: route `a`: unknown upstream `backnd`; did you mean `backend`?"
    );
    assert!(
        lines[1].starts_with("t.toml:9:8: route `b`: path `/b/:id`"),
        "{err}"
    );
    assert!(
        lines[2].starts_with(
            "t.toml:16:10: route `c`: unknown plugin `key-auht`: did you mean `key-auth`?"
        ),
        "{err}"
    );
    assert_eq!(lines[3], "3 errors");
}
