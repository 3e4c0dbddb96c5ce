//! Giving a claimed run back to the queue when its node drains (stops for an
//! upgrade): written once for both backends, like `sql.rs`, and stamped onto
//! each store type by [`impl_release!`]; `impl_store!` calls these for
//! [`crate::Store::release_claim`] and [`crate::Store::unclaim`].

/// Inherent `release_claim_sql` and `unclaim_sql` for `$store`, whose `pool`
/// is a `sqlx::Pool<$db>` and which has `impl_store!`'s `DIALECT` and
/// `record_transition`.
macro_rules! impl_release {
    ($store:ty, $db:ty) => {
        impl $store {
            /// See [`crate::Store::release_claim`].
            async fn release_claim_sql(
                &self,
                id: errand_core::RunId,
                worker: &str,
                reason: &str,
            ) -> $crate::Result<bool> {
                use errand_core::RunState;
                let d = Self::DIALECT;
                let now = $crate::common::millis(chrono::Utc::now());
                let mut tx = self.pool.begin().await?;
                // Write first (see `transition`); the claim stays, so nobody
                // else starts the run while this worker stops it.
                let sql = format!(
                    "UPDATE runs SET state = 'queued', reason = $1, owner_pid = NULL \
                     WHERE id = $2 AND claimed_by = $3 AND state IN ({}) RETURNING id",
                    $crate::common::active_states()
                );
                let moved = sqlx::query(&d.sql(&sql))
                    .bind(reason)
                    .bind(id.to_string())
                    .bind(worker)
                    .fetch_optional(&mut *tx)
                    .await?;
                if moved.is_some() {
                    Self::record_transition(&mut tx, id, RunState::Queued, now, Some(reason))
                        .await?;
                    tx.commit().await?;
                    return Ok(true);
                }
                // A run claimed but not started yet is already queued.
                let queued = sqlx::query(&d.sql(
                    "SELECT id FROM runs WHERE id = $1 AND claimed_by = $2 AND state = 'queued'",
                ))
                .bind(id.to_string())
                .bind(worker)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(queued.is_some())
            }

            /// See [`crate::Store::unclaim`].
            async fn unclaim_sql(
                &self,
                id: errand_core::RunId,
                worker: &str,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(&Self::DIALECT.sql(
                    "UPDATE runs SET claimed_by = NULL, lease_until = NULL \
                     WHERE id = $1 AND claimed_by = $2 AND state = 'queued'",
                ))
                .bind(id.to_string())
                .bind(worker)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use impl_release;
