//! Outlier detection (`[upstreams.NAME.outlier_detection]`): a target whose
//! answers are errors (5xx statuses, failed connections, timeouts)
//! `consecutive_errors` times in a row is ejected, for `base_ejection_time`
//! times the number of its ejections in a row (at most
//! `max_ejection_time`), never more than `max_ejection_percent` of the
//! upstream's targets at once (but always one may be). The count of
//! ejections starts over once the target has stayed in rotation for
//! `max_ejection_time`.

use super::Upstream;
use super::balance::Target;
use super::settings::OutlierDetection;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Upstream {
    /// After a reload that rebuilt the upstream: `target` takes over what
    /// outlier detection knew of `old` (a target of the upstream built at
    /// `old_born`): its errors and ejections in a row, and when its last
    /// ejection ended, moved onto this upstream's clock.
    pub(super) fn inherit_outlier(&self, target: &Target, old: &Target, old_born: Instant) {
        if self.settings.outlier_detection.is_none() {
            return;
        }
        let copy = |to: &std::sync::atomic::AtomicU32, from: &std::sync::atomic::AtomicU32| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        copy(&target.errors, &old.errors);
        copy(&target.ejections, &old.ejections);
        let ended = old_born + Duration::from_millis(old.ejected_until.load(Ordering::Relaxed));
        let ended = ended.saturating_duration_since(self.born).as_millis();
        target
            .ejected_until
            .store(u64::try_from(ended).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Outlier detection is told of target `index`'s answer or failure:
    /// `error` when it was a 5xx, a failed connection or a timeout.
    pub(super) fn outlier_saw(&self, index: usize, error: bool) {
        let Some(detection) = &self.settings.outlier_detection else {
            return;
        };
        let target = &self.targets[index];
        if !error {
            // Read first: most answers find nothing to reset.
            if target.errors.load(Ordering::Relaxed) != 0 {
                target.errors.store(0, Ordering::Relaxed);
            }
            self.forgive(index, detection);
            return;
        }
        let errors = target.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if errors >= detection.consecutive_errors && self.targets.len() > 1 {
            self.eject(index, detection, errors);
        }
    }

    /// Ejects target `index` after `errors` in a row, unless it is out
    /// already or that would eject too many.
    fn eject(&self, index: usize, detection: &OutlierDetection, errors: u32) {
        // Errors that arrive together must not eject one target twice, nor
        // two targets past the share: the check and the ejection are one
        // step. Ejections are rare, so a lock costs nothing that matters.
        let Ok(_one_at_a_time) = self.ejecting.lock() else {
            return;
        };
        let now = self.now();
        let target = &self.targets[index];
        if !target.in_rotation(now) || !self.room_to_eject(now, detection) {
            return;
        }
        let times = target.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let out_for = detection
            .base_ejection_time
            .saturating_mul(times)
            .min(detection.max_ejection_time);
        let until = now + out_for.as_millis() as u64;
        target.out_until.store(until, Ordering::Relaxed);
        target.ejected_until.store(until, Ordering::Relaxed);
        target.errors.store(0, Ordering::Relaxed);
        self.ejections.inc();
        tracing::warn!(
            upstream = %self.name,
            target = %target.authority,
            errors,
            "target ejected for {out_for:?} after errors in a row (ejection {times})"
        );
    }

    /// Whether one more target may be ejected: those out of rotation stay
    /// within `max_ejection_percent` of all, or none is out.
    fn room_to_eject(&self, now: u64, detection: &OutlierDetection) -> bool {
        let out = self.targets.iter().filter(|t| !t.in_rotation(now)).count();
        let total = self.targets.len();
        out == 0 || (out + 1) * 100 <= total * detection.max_ejection_percent as usize
    }

    /// Target `index` answered well: its ejections in a row start over
    /// once it has been back for `max_ejection_time`.
    fn forgive(&self, index: usize, detection: &OutlierDetection) {
        let target = &self.targets[index];
        if target.ejections.load(Ordering::Relaxed) == 0 {
            return;
        }
        let back_since = target.ejected_until.load(Ordering::Relaxed);
        let long_enough = detection.max_ejection_time.as_millis() as u64;
        if self.now() >= back_since.saturating_add(long_enough) {
            target.ejections.store(0, Ordering::Relaxed);
        }
    }
}
