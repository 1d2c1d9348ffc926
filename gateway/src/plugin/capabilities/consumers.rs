//! `gateway:plugin/consumers`: the consumers configured in `[[consumers]]`
//! and their usage plans, looked up for a plugin. An API key is found by its
//! keyed hash (see `identity`), an AWS Signature Version 4 signature by its
//! access key's secret, held in the host; a plugin gets the consumer, never a
//! stored key or secret.
//! The host functions run on a [`ConsumersView`] of the config's consumers.

use crate::identity::{Consumer, Consumers};
use crate::plugin::bindings::gateway::plugin::{consumers, types};
use wasmtime::component::HasData;

/// What the `consumers` host functions serve from: the config's
/// `[[consumers]]`, borrowed from an instance's state for one call.
pub struct ConsumersView<'a>(pub &'a Consumers);

/// The `consumers` interface's data in the linker: a [`ConsumersView`].
pub struct HasConsumers;

impl HasData for HasConsumers {
    type Data<'a> = ConsumersView<'a>;
}

impl consumers::Host for ConsumersView<'_> {
    fn find_by_key(&mut self, key: String) -> Option<consumers::Consumer> {
        self.0.find_by_key(&key).map(|c| to_wit(&c))
    }

    fn get(&mut self, name: String) -> Option<consumers::Consumer> {
        self.0.get(&name).map(|c| to_wit(&c))
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
        self.0
            .verify_sigv4(
                &access_key_id,
                (&date, &region, &service),
                &string_to_sign,
                &signature,
            )
            .map(|c| to_wit(&c))
    }

    fn plan(&mut self, name: String) -> Option<consumers::UsagePlan> {
        let plan = self.0.plan(&name)?;
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
