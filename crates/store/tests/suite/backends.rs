//! Where the cases run: an SQLite file in a temporary directory, or a fresh
//! PostgreSQL database that is dropped afterwards (even when the case panics).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use errand_store::{PgStore, SqliteStore, Store};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

const DEFAULT_URL: &str = "postgres://errand:errand@127.0.0.1:5432/errand_test";

pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("errand.db"))
        .await
        .unwrap();
    case(Arc::new(store)).await;
}

pub async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect_with(db.options.clone()).await.unwrap();
    let outcome = tokio::spawn(case(Arc::new(store.clone()))).await;
    store.close().await;
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Why PostgreSQL was found unreachable, once per test process.
static UNREACHABLE: OnceLock<String> = OnceLock::new();

/// A database of one test's own.
pub struct TestDb {
    admin: PgConnectOptions,
    pub options: PgConnectOptions,
    base_url: String,
    name: String,
}

impl TestDb {
    /// `None` (after saying so) when PostgreSQL cannot be reached outside CI.
    pub async fn create() -> Option<TestDb> {
        let base_url =
            std::env::var("ERRAND_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
        let admin: PgConnectOptions = base_url.parse().expect("a valid PostgreSQL URL");
        let admin = admin.disable_statement_logging();
        let mut conn = match UNREACHABLE.get() {
            Some(why) => return unreachable(why),
            None => match admin_connection(&admin).await {
                Ok(c) => c,
                Err(why) => return unreachable(UNREACHABLE.get_or_init(|| why)),
            },
        };
        let name = format!(
            "errand_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} (the role needs CREATEDB): {e}"));
        conn.close().await.ok();
        let options = admin.clone().database(&name);
        Some(TestDb {
            admin,
            options,
            base_url,
            name,
        })
    }

    /// The test database's URL.
    pub fn url(&self) -> String {
        let (url, query) = match self.base_url.split_once('?') {
            Some((u, q)) => (u, Some(q)),
            None => (self.base_url.as_str(), None),
        };
        let authority_start = url.find("://").map_or(0, |i| i + 3);
        let server = match url[authority_start..].find('/') {
            Some(i) => &url[..authority_start + i],
            None => url,
        };
        match query {
            Some(q) => format!("{server}/{}?{q}", self.name),
            None => format!("{server}/{}", self.name),
        }
    }

    pub async fn drop_db(self) {
        if let Ok(mut conn) = admin_connection(&self.admin).await {
            let dropped = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
            if let Err(e) = dropped {
                eprintln!("could not drop test database {}: {e}", self.name);
            }
            conn.close().await.ok();
        }
    }
}

fn unreachable<T>(why: &str) -> Option<T> {
    errand_test_support::need(
        "PostgreSQL (scripts/setup starts it, or set ERRAND_TEST_DATABASE_URL)",
        Err(why.to_owned()),
    );
    None
}

/// Connects to the admin database: the URL's own, or `postgres` if that one
/// does not exist.
async fn admin_connection(admin: &PgConnectOptions) -> Result<PgConnection, String> {
    let connect = |opts: PgConnectOptions| async move {
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&opts))
            .await
            .map_err(|_| "timed out connecting".to_string())?
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.code().as_deref() == Some("3D000") => {
                    "missing database".to_string()
                }
                _ => e.to_string(),
            })
    };
    match connect(admin.clone()).await {
        Err(e) if e == "missing database" => connect(admin.clone().database("postgres")).await,
        other => other,
    }
}
