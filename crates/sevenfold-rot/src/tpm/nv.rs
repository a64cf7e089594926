//! Monotonic counters as TPM NV counters (`TPM_NT_COUNTER`).
//!
//! Counter index `i` is NV index [`COUNTER_NV_BASE`]` + i`, in the owner's
//! NV range (`0x01300000..=0x0130FFFF`). An NV counter only ever increments,
//! by one, and the TPM never lets it go back, not even by deleting and
//! re-creating the index: a counter's first increment starts it at the
//! highest value any deleted counter on this TPM held. Sevenfold never
//! deletes its counters.
//!
//! Defining and writing use owner authorisation with the empty password,
//! the state of a TPM that has not been taken ownership of; reading a
//! counter that was never defined or never incremented gives 0.

use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::{CapabilityType, NvIndexType};
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, ObjectHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::structures::{CapabilityData, NvPublicBuilder};

use super::{tpm_err, TpmState};
use crate::{CounterIndex, RotError};

/// NV index of counter 0.
pub const COUNTER_NV_BASE: u32 = 0x0130_0000;
/// Largest rise of a counter in one [`advance`] (one NV write per step).
pub const MAX_COUNTER_STEP: u64 = 4096;
/// Size of an NV counter's value.
const COUNTER_SIZE: u16 = 8;

fn nv_index(index: CounterIndex) -> Result<NvIndexTpmHandle, RotError> {
    NvIndexTpmHandle::new(COUNTER_NV_BASE + index.get()).map_err(tpm_err("naming an NV counter"))
}

/// Opens the counter's NV index if it is defined; checks it is one of ours
/// (an 8-byte counter the owner reads and writes), so that an ordinary,
/// rewritable index someone put at our address is refused, not trusted.
fn open(state: &mut TpmState, index: CounterIndex) -> Result<Option<NvCounter>, RotError> {
    let tpm_handle = nv_index(index)?;
    let raw = COUNTER_NV_BASE + index.get();
    let (data, _) = state
        .ctx
        .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, raw, 1))
        .map_err(tpm_err("listing NV indices"))?;
    let defined = match data {
        CapabilityData::Handles(handles) => handles.iter().any(|h| u32::from(*h) == raw),
        _ => false,
    };
    if !defined {
        return Ok(None);
    }
    let object = state
        .ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
        .map_err(tpm_err("opening an NV counter"))?;
    let mut counter = NvCounter(object, false);
    let (public, _) = state
        .ctx
        .execute_without_session(|ctx| ctx.nv_read_public(NvIndexHandle::from(counter.0)))
        .map_err(tpm_err("reading an NV counter's attributes"))?;
    let attributes = public.attributes();
    let ours = attributes.index_type().ok() == Some(NvIndexType::Counter)
        && attributes.owner_read()
        && attributes.owner_write()
        && public.data_size() == usize::from(COUNTER_SIZE);
    if !ours {
        counter.close(state);
        return Err(RotError::Tpm {
            operation: "opening an NV counter",
            detail: format!(
                "NV index {raw:#010x} exists but is not an 8-byte owner counter; \
                 refusing to use it as counter {index}"
            ),
        });
    }
    counter.1 = attributes.written();
    Ok(Some(counter))
}

/// An opened counter's ESYS handle (closed after use) and whether it has
/// been written (incremented) yet.
struct NvCounter(ObjectHandle, bool);

impl NvCounter {
    fn close(mut self, state: &mut TpmState) {
        let _ = state.ctx.tr_close(&mut self.0);
    }
}

/// The counter's value; 0 if never defined or never incremented.
pub(super) fn read(state: &mut TpmState, index: CounterIndex) -> Result<u64, RotError> {
    let Some(counter) = open(state, index)? else {
        return Ok(0);
    };
    let value = value_of(state, &counter);
    counter.close(state);
    value
}

fn value_of(state: &mut TpmState, counter: &NvCounter) -> Result<u64, RotError> {
    if !counter.1 {
        return Ok(0);
    }
    let handle = NvIndexHandle::from(counter.0);
    let bytes = state
        .ctx
        .execute_with_nullauth_session(|ctx| ctx.nv_read(NvAuth::Owner, handle, COUNTER_SIZE, 0))
        .map_err(tpm_err("reading an NV counter"))?;
    let bytes = <[u8; 8]>::try_from(bytes.value()).map_err(|_| RotError::Tpm {
        operation: "reading an NV counter",
        detail: format!("the TPM returned {} bytes, not 8", bytes.value().len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Raises the counter to `value` by incrementing it; see
/// [`RootOfTrust::advance_counter`](crate::RootOfTrust::advance_counter).
pub(super) fn advance(
    state: &mut TpmState,
    index: CounterIndex,
    value: u64,
) -> Result<u64, RotError> {
    let existing = open(state, index)?;
    let current = match &existing {
        Some(counter) => value_of(state, counter),
        None => Ok(0),
    };
    let current = match current {
        Ok(current) => current,
        Err(e) => {
            if let Some(counter) = existing {
                counter.close(state);
            }
            return Err(e);
        }
    };
    if value <= current {
        if let Some(counter) = existing {
            counter.close(state);
        }
        if value < current {
            return Err(RotError::CounterRollback {
                index: index.get(),
                current,
                requested: value,
            });
        }
        return Ok(current);
    }
    let step = value - current;
    if step > MAX_COUNTER_STEP {
        if let Some(counter) = existing {
            counter.close(state);
        }
        return Err(RotError::CounterStepTooLarge {
            index: index.get(),
            step,
            max: MAX_COUNTER_STEP,
        });
    }
    let counter = match existing {
        Some(counter) => counter,
        None => define(state, index)?,
    };
    let result = increment_to(state, &counter, value);
    counter.close(state);
    result
}

fn define(state: &mut TpmState, index: CounterIndex) -> Result<NvCounter, RotError> {
    let attributes = NvIndexAttributesBuilder::new()
        .with_owner_write(true)
        .with_owner_read(true)
        .with_nv_index_type(NvIndexType::Counter)
        .build()
        .map_err(tpm_err("defining an NV counter"))?;
    let public = NvPublicBuilder::new()
        .with_nv_index(nv_index(index)?)
        .with_index_name_algorithm(HashingAlgorithm::Sha256)
        .with_index_attributes(attributes)
        .with_data_area_size(usize::from(COUNTER_SIZE))
        .build()
        .map_err(tpm_err("defining an NV counter"))?;
    let handle = state
        .ctx
        .execute_with_nullauth_session(|ctx| ctx.nv_define_space(Provision::Owner, None, public))
        .map_err(tpm_err("defining an NV counter"))?;
    Ok(NvCounter(handle.into(), false))
}

/// Increments until the counter reads at least `value`. The first increment
/// of a new counter may jump higher (see the module docs); the counter then
/// holds more than asked, which is still never a rollback.
fn increment_to(state: &mut TpmState, counter: &NvCounter, value: u64) -> Result<u64, RotError> {
    let handle = NvIndexHandle::from(counter.0);
    let written = NvCounter(counter.0, true);
    let mut current = value_of(state, counter)?;
    for _ in 0..=MAX_COUNTER_STEP {
        if current >= value {
            return Ok(current);
        }
        state
            .ctx
            .execute_with_nullauth_session(|ctx| ctx.nv_increment(NvAuth::Owner, handle))
            .map_err(tpm_err("incrementing an NV counter"))?;
        current = value_of(state, &written)?;
    }
    Err(RotError::Tpm {
        operation: "incrementing an NV counter",
        detail: "the counter did not reach the requested value".into(),
    })
}
