//! Typed arguments and answers of the lookup NIFs, and the one error shape for bad
//! arguments: a raised `ArgumentError` whose message names what is wrong.

use pod_dist_core::index;
use rustler::types::atom;
use rustler::types::list::ListIterator;
use rustler::{Decoder, Encoder, Env, NifException, NifResult, NifUnitEnum, Term};

/// `%ArgumentError{message: message}`, raised for a bad argument.
#[derive(NifException)]
#[module = "ArgumentError"]
#[rustler(encode)]
pub struct ArgumentError {
    message: String,
}

/// The error that raises `ArgumentError` with `message`.
pub fn argument_error(message: impl Into<String>) -> rustler::Error {
    rustler::Error::RaiseTerm(Box::new(ArgumentError {
        message: message.into(),
    }))
}

/// The elements of a proper list; `None` for anything else. Rustler's list decoding
/// panics on an improper list, so every list argument comes through here.
pub fn proper_list(term: Term<'_>) -> Option<ListIterator<'_>> {
    term.list_length().ok()?;
    term.decode().ok()
}

/// A host or node basename as the distribution hands it over: a binary, a charlist or
/// an atom. Anything else decodes to `None`, which names no pod.
pub struct Name(pub Option<String>);

impl<'a> Decoder<'a> for Name {
    fn decode(term: Term<'a>) -> NifResult<Name> {
        Ok(Name(text(term)))
    }
}

fn text(term: Term<'_>) -> Option<String> {
    if let Ok(binary) = term.decode::<rustler::Binary>() {
        return std::str::from_utf8(binary.as_slice()).ok().map(str::to_string);
    }
    if let Some(chars) = proper_list(term) {
        return chars.map(|c| c.decode::<u32>().ok().and_then(char::from_u32)).collect();
    }
    term.atom_to_string().ok()
}

/// The address family asked for: `:inet` or `:inet6`.
pub struct Family(pub index::Family);

#[derive(NifUnitEnum)]
enum FamilyName {
    Inet,
    Inet6,
}

impl<'a> Decoder<'a> for Family {
    fn decode(term: Term<'a>) -> NifResult<Family> {
        match term.decode() {
            Ok(FamilyName::Inet) => Ok(Family(index::Family::Inet)),
            Ok(FamilyName::Inet6) => Ok(Family(index::Family::Inet6)),
            Err(_) => Err(argument_error("family must be :inet or :inet6")),
        }
    }
}

/// A lookup's answer: what was found (the `{:ok, ...}` tuple), `:error` when no pod
/// answers, or `{:error, why}`.
pub enum Answer<T> {
    /// The found tuple, `{:ok, ip}` or `{:ok, ip, detail}`.
    Found(T),
    /// `:error`
    NotFound,
    /// `{:error, why}`
    Refused(Refusal),
}

/// Why a host that may name a pod has no answer.
#[derive(NifUnitEnum, Debug, Clone, Copy)]
pub enum Refusal {
    /// `:ambiguous`: several pods answer to it.
    Ambiguous,
    /// `:not_synced`: none does yet, and the initial list is not in.
    NotSynced,
}

impl<T: Encoder> Encoder for Answer<T> {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Answer::Found(found) => found.encode(env),
            Answer::NotFound => atom::error().encode(env),
            Answer::Refused(why) => (atom::error(), why).encode(env),
        }
    }
}

/// Whose epmd-less port it is: the node's own (`dist-<basename>`) or any node's (`dist`).
#[derive(NifUnitEnum, Debug, Clone, Copy)]
pub enum Declared {
    /// `:own`
    Own,
    /// `:shared`
    Shared,
}
