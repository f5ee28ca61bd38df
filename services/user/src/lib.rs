//! The user service of the Spanline demo: `GET /users/{id}` answers a user from a simulated
//! `users` table (a `SELECT users` CLIENT span), or 404 for an unknown id; `GET /users` lists
//! every user, so a newcomer knows which ids to order with.
//!
//! The service owns its answer type ([`User`]) and the typed client its callers use
//! ([`UserClient`]).

mod client;

pub use client::UserClient;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use demokit::{AppError, DbQuery, Telemetry, apply_faults, db_query};
use serde::{Deserialize, Serialize};

/// The default listen address (DESIGN §2).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8081";

/// Flags and environment of `user-service`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "user-service", version, about = "Spanline demo user service",
    after_help = demokit::TELEMETRY_HELP,
    mut_arg("listen_addr", |a| a.default_value(DEFAULT_LISTEN).required(false))
)]
pub struct Config {
    /// Common flags (LISTEN_ADDR, --healthcheck).
    #[command(flatten)]
    pub common: demokit::CommonArgs,
    /// Simulated latency of the users table lookup, ms (±20 % jitter).
    #[arg(long, env = "USER_DB_LATENCY_MS", default_value_t = 12)]
    pub db_latency_ms: u64,
}

/// A user as answered by `GET /users/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// The id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// The simulated `users` table: `(id, name, email)`.
const USERS: [(&str, &str, &str); 5] = [
    ("1", "Ada Lovelace", "ada@example.com"),
    ("2", "Grace Hopper", "grace@example.com"),
    ("3", "Alan Turing", "alan@example.com"),
    ("4", "Barbara Liskov", "barbara@example.com"),
    ("5", "Leslie Lamport", "leslie@example.com"),
];

struct AppState {
    telemetry: Telemetry,
    db_latency_ms: u64,
}

/// The routes of the user service (without `/healthz` and the tracing layer, which
/// [`demokit::app`] adds).
pub fn app(telemetry: Telemetry, db_latency_ms: u64) -> Router {
    Router::new()
        .route("/users", get(list_users))
        .route("/users/{id}", get(get_user))
        .with_state(Arc::new(AppState {
            telemetry,
            db_latency_ms,
        }))
}

/// The users of the demo, as answered by `GET /users`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserList {
    /// Every user, by id.
    pub users: Vec<User>,
}

async fn list_users(State(state): State<Arc<AppState>>) -> Result<Json<UserList>, AppError> {
    apply_faults("user").await?;
    let query = DbQuery {
        operation: "SELECT",
        table: "users",
        query_text: "SELECT id, name, email FROM users ORDER BY id",
    };
    db_query(&state.telemetry.tracer, query, state.db_latency_ms, 0).await;
    let users = USERS
        .iter()
        .map(|(id, name, email)| User {
            id: (*id).to_owned(),
            name: (*name).to_owned(),
            email: (*email).to_owned(),
        })
        .collect();
    Ok(Json(UserList { users }))
}

async fn get_user(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<User>, AppError> {
    apply_faults("user").await?;
    if let Some(span) = tracekit::current_span() {
        span.set_attribute("app.user.id", id.clone());
    }
    let query = DbQuery {
        operation: "SELECT",
        table: "users",
        query_text: "SELECT id, name, email FROM users WHERE id = $1",
    };
    db_query(&state.telemetry.tracer, query, state.db_latency_ms, 0).await;
    USERS
        .iter()
        .find(|(uid, _, _)| *uid == id)
        .map(|(id, name, email)| {
            Json(User {
                id: (*id).to_owned(),
                name: (*name).to_owned(),
                email: (*email).to_owned(),
            })
        })
        .ok_or_else(|| AppError::not_found(format!("unknown user {id:?}")))
}
