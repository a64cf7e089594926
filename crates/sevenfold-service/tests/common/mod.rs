//! Test databases for the store's integration tests: a fresh SQLite file or
//! a fresh PostgreSQL database per test, and the `both!` macro that runs a
//! test body on each.
#![allow(dead_code, unreachable_pub, unused_macros, unused_imports)]

use std::future::Future;

use sevenfold_service::store::{Backend, Store, StoreError};
use sqlx::{AssertSqlSafe, Connection};

const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database for one test: where it is, and what to clean up.
pub struct TestDb {
    url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>, // (admin url, database name)
}

impl TestDb {
    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = Store::sqlite_url(&dir.path().join("store.db"));
        TestDb {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// `None` when PostgreSQL is unreachable and skipping was asked for.
    pub async fn postgres() -> Option<TestDb> {
        let admin = std::env::var("SEVENFOLD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_owned());
        let mut conn = match sqlx::postgres::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) => {
                if std::env::var("SEVENFOLD_SKIP_POSTGRES").as_deref() == Ok("1") {
                    eprintln!("PostgreSQL at {admin} unreachable ({e}): skipped (SEVENFOLD_SKIP_POSTGRES=1)");
                    return None;
                }
                panic!(
                    "PostgreSQL at {admin} is unreachable: {e}. Start it, point \
                     SEVENFOLD_TEST_POSTGRES_URL at a server where this user may CREATE \
                     DATABASE, or set SEVENFOLD_SKIP_POSTGRES=1 to skip the PostgreSQL half."
                );
            }
        };
        let name = format!("sevenfold_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        Some(TestDb {
            url: with_database(&admin, &name),
            backend: Backend::Postgres,
            _dir: None,
            pg: Some((admin, name)),
        })
    }

    pub async fn cleanup(self) {
        if let Some((admin, name)) = &self.pg {
            let mut conn = sqlx::postgres::PgConnection::connect(admin).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// `admin` with its database name replaced by `name`.
pub fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_and_path = &base[scheme_end..];
    let host = host_and_path.split('/').next().unwrap_or(host_and_path);
    format!("{}{host}/{name}{query}", &base[..scheme_end])
}

/// What a test body gets: the database URL and back-end. Cheap to clone and
/// `'static`, so the body can run in a spawned task while the harness keeps
/// what it needs to clean up even if the body panics.
#[derive(Clone)]
pub struct Db {
    pub url: String,
    pub backend: Backend,
}

impl Db {
    pub async fn connect(&self) -> Store {
        Store::connect(&self.url, 5).await.unwrap()
    }

    /// A plain pool, for tampering with rows behind the store's back.
    pub async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.url).await.unwrap()
    }
}

pub async fn run<F, Fut>(db: TestDb, body: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = tokio::spawn(body(Db {
        url: db.url.clone(),
        backend: db.backend,
    }));
    let result = handle.await;
    db.cleanup().await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// Defines `mod $name { sqlite(), postgres() }`, each running `$body` with
/// `$db: Db` bound to a fresh database of that back-end.
macro_rules! both_backends {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(TestDb::sqlite(), |$db: Db| async move { $body }).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(test_db) = TestDb::postgres().await {
                    run(test_db, |$db: Db| async move { $body }).await;
                }
            }
        }
    };
}

pub fn assert_not_found<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

pub fn assert_conflict<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

pub(crate) use both_backends as both;
