//! A small web service that decides with feature flags, through `flagpole-provider` and the OpenFeature
//! SDK. It reads every provider option from the `FLAGD_*` environment variables of the flagd provider
//! specification, so one binary runs in each mode:
//!
//! ```sh
//! flagpole start --uri file:examples/flags.json &                 # the daemon from this repository
//! FLAGD_RESOLVER=rpc cargo run -p flagpole-example-service           # evaluations in the daemon (8013)
//! FLAGD_RESOLVER=in-process cargo run -p flagpole-example-service    # flags synced from the daemon (8015)
//! FLAGD_RESOLVER=file FLAGD_OFFLINE_FLAG_SOURCE_PATH=examples/flags.json \
//!     cargo run -p flagpole-example-service                          # no daemon: the file itself
//! curl 'localhost:3000/checkout?user=dev@example.com'   # examples/flags.json: on for dev@ addresses
//! ```
//!
//! `LISTEN_ADDR` (default `127.0.0.1:3000`) is where it listens; it prints `listening on ADDR` once it
//! serves. `CHECKOUT_FLAG` (default `new-checkout`) names the boolean flag it asks about.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use flagpole_provider::{FlagdOptions, FlagdProvider, no_value_reason};
use open_feature::{Client, EvaluationContext, OpenFeature};
use serde::Deserialize;
use serde_json::{Value, json};

/// What the handlers share.
struct App {
    client: Client,
    flag: String,
}

#[derive(Deserialize)]
struct CheckoutQuery {
    /// The user, as the targeting key and the `email` attribute.
    user: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // FLAGD_RESOLVER, FLAGD_HOST, FLAGD_PORT, FLAGD_SYNC_PORT, FLAGD_OFFLINE_FLAG_SOURCE_PATH, FLAGD_TLS, ...
    let options = FlagdOptions::from_env()?;
    let provider = FlagdProvider::new(options)?;
    let client = {
        let mut api = OpenFeature::singleton_mut().await;
        // Waits (up to FLAGD_DEADLINE_MS) for the first flags.
        api.set_provider(provider).await;
        api.create_client()
    };
    let app = Arc::new(App {
        client,
        flag: std::env::var("CHECKOUT_FLAG").unwrap_or_else(|_| "new-checkout".to_owned()),
    });
    let router = Router::new()
        .route("/checkout", get(checkout))
        .with_state(app);
    let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

/// Which checkout this user gets: the flag's value, with its variant and reason. A flag that cannot be
/// evaluated gives the code default (`false`) and says why; the service keeps answering.
async fn checkout(State(app): State<Arc<App>>, Query(query): Query<CheckoutQuery>) -> Json<Value> {
    let mut context = EvaluationContext::default();
    if let Some(user) = query.user {
        context = context
            .with_targeting_key(user.clone())
            .with_custom_field("email", user);
    }
    let answer = match app
        .client
        .get_bool_details(&app.flag, Some(&context), None)
        .await
    {
        Ok(details) => json!({
            "newCheckout": details.value,
            "variant": details.variant,
            "reason": details.reason.map(|r| r.to_string()),
        }),
        Err(error) => json!({
            "newCheckout": false,
            // A disabled flag, or no default variant: the code default is the intended answer.
            "reason": no_value_reason(&error).map_or_else(|| "ERROR".to_owned(), |r| r.to_string()),
            "error": error.code.to_string(),
        }),
    };
    Json(answer)
}
