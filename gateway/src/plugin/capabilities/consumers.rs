//! `gateway:plugin/consumers`: the consumers configured in `[[consumers]]`
//! and their usage plans, looked up for a plugin. An API key is found by its
//! keyed hash (see `identity`), an AWS Signature Version 4 signature by its
//! access key's secret, held in the host; a plugin gets the consumer, never a
//! stored key or secret.
//! A basic-auth password is checked by the host (`identity::passwords`): the
//! hash is computed on a blocking thread, a wait marked on the instance's
//! `IoWaits` so that it does not spend the call's CPU deadline (the checker
//! bounds it instead), and one request may ask for a few checks only.
//! The host functions run on a [`ConsumersView`] of the config's consumers.

use crate::identity::passwords::{Check, PASSWORD_CHECKS_PER_REQUEST};
use crate::identity::{Consumer, Consumers};
use crate::plugin::bindings::gateway::plugin::{consumers, types};
use crate::plugin::watchdog::IoWaits;
use wasmtime::component::HasData;

/// What the `consumers` host functions serve from: the config's
/// `[[consumers]]` and the instance's waits, borrowed for one call.
pub struct ConsumersView<'a> {
    /// The config's consumers.
    pub consumers: &'a Consumers,
    /// Where a password check marks its wait.
    pub io: &'a IoWaits,
    /// The plugin's name, for logs.
    pub plugin: &'a str,
    /// Password checks the request asked for so far.
    pub password_checks: &'a mut u8,
}

/// The `consumers` interface's data in the linker: a [`ConsumersView`].
pub struct HasConsumers;

impl HasData for HasConsumers {
    type Data<'a> = ConsumersView<'a>;
}

impl consumers::Host for ConsumersView<'_> {
    fn find_by_key(&mut self, key: String) -> Option<consumers::Consumer> {
        self.consumers.find_by_key(&key).map(|c| to_wit(&c))
    }

    fn get(&mut self, name: String) -> Option<consumers::Consumer> {
        self.consumers.get(&name).map(|c| to_wit(&c))
    }

    async fn verify_password(
        &mut self,
        username: String,
        password: String,
    ) -> consumers::PasswordCheck {
        if *self.password_checks >= PASSWORD_CHECKS_PER_REQUEST {
            tracing::warn!(
                plugin = self.plugin,
                "a request asked for more than {PASSWORD_CHECKS_PER_REQUEST} password checks; answered busy"
            );
            return consumers::PasswordCheck::Busy;
        }
        *self.password_checks += 1;
        let check = self.consumers.verify_password(&username, &password);
        match self.io.around(check).await {
            Check::Valid(consumer) => consumers::PasswordCheck::Valid(to_wit(&consumer)),
            Check::Invalid => consumers::PasswordCheck::Invalid,
            Check::Busy => consumers::PasswordCheck::Busy,
        }
    }

    fn verify_sigv4(
        &mut self,
        access_key_id: String,
        date: String,
        region: String,
        service: String,
        string_to_sign: String,
        signature: String,
    ) -> Option<consumers::Consumer> {
        self.consumers
            .verify_sigv4(
                &access_key_id,
                (&date, &region, &service),
                &string_to_sign,
                &signature,
            )
            .map(|c| to_wit(&c))
    }

    fn plan(&mut self, name: String) -> Option<consumers::UsagePlan> {
        let plan = self.consumers.plan(&name)?;
        Some(consumers::UsagePlan {
            name: plan.name.clone(),
            rate: plan.rate.map(|r| types::Rate {
                limit: r.limit,
                period_ms: u64::try_from(r.period.as_millis()).unwrap_or(u64::MAX),
                burst: r.burst,
            }),
            quota: plan.quota.map(|q| types::Quota {
                limit: q.limit,
                period: period_to_wit(q.period),
            }),
        })
    }
}

/// The contract's name for a quota period.
fn period_to_wit(period: crate::config::QuotaPeriod) -> types::QuotaPeriod {
    match period {
        crate::config::QuotaPeriod::Day => types::QuotaPeriod::Day,
        crate::config::QuotaPeriod::Week => types::QuotaPeriod::Week,
        crate::config::QuotaPeriod::Month => types::QuotaPeriod::Month,
    }
}

fn to_wit(consumer: &Consumer) -> consumers::Consumer {
    consumers::Consumer {
        name: consumer.name.clone(),
        groups: consumer.groups.clone(),
        plan: consumer.plan.clone(),
        metadata: consumer.metadata.clone(),
    }
}
