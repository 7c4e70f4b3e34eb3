//! Type-erased task values.
//!
//! Every result a task produces is stored once, behind an [`Arc`], and handed to each
//! consumer without copying. A consumer that takes its input by value receives the value
//! itself when it is the last holder and a clone otherwise; a consumer that takes `&T`
//! borrows it.

use std::any::Any;
use std::sync::Arc;

use crate::error::TaskError;

/// A task input or result whose type the compiler has already checked.
pub type Value = Arc<dyn Any + Send + Sync>;

/// Wraps a typed value.
#[inline]
pub fn value<T: Send + Sync + 'static>(v: T) -> Value {
    Arc::new(v)
}

/// Takes a `T` out of a value: moved when this is the last holder, cloned otherwise.
///
/// # Errors
/// A value of another type, which the checks `flow!` emits make impossible for wired
/// graphs; the error names both types so a hand-built graph is easy to fix.
#[inline]
pub fn take<T: Clone + Send + Sync + 'static>(v: Value) -> Result<T, TaskError> {
    match v.downcast::<T>() {
        Ok(arc) => Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone())),
        Err(_) => Err(type_mismatch::<T>()),
    }
}

/// Borrows a `T` inside a value.
///
/// # Errors
/// As [`take`].
#[inline]
pub fn borrow<T: 'static>(v: &Value) -> Result<&T, TaskError> {
    v.downcast_ref::<T>().ok_or_else(type_mismatch::<T>)
}

fn type_mismatch<T>() -> TaskError {
    TaskError::fail(format!(
        "input is not a `{}`: the graph was wired by hand with a wrong type",
        std::any::type_name::<T>()
    ))
}

/// Writes a `T` held in a value as JSON (see [`crate::task::TaskCodec`]).
///
/// # Errors
/// A value of another type, or a `T` serde cannot write as JSON (e.g. a map whose keys
/// are not strings or numbers).
pub fn encode_json<T: serde::Serialize + 'static>(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let t = v
        .downcast_ref::<T>()
        .ok_or_else(|| format!("the value is not a `{}`", std::any::type_name::<T>()))?;
    serde_json::to_writer(out, t).map_err(|e| e.to_string())
}

/// Reads a `T` from JSON into a value.
///
/// # Errors
/// JSON that is malformed or does not describe a `T`: serde's message, with line and column.
pub fn decode_json<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
    bytes: &[u8],
) -> Result<Value, String> {
    serde_json::from_slice::<T>(bytes)
        .map(value)
        .map_err(|e| format!("not a valid `{}`: {e}", std::any::type_name::<T>()))
}

/// Writes a `T` held in a value in the compact wire format (MessagePack, structs as
/// arrays), for a worker in another process of the same build.
///
/// # Errors
/// A value of another type, or a `T` serde cannot write.
pub fn pack<T: serde::Serialize + 'static>(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let t = v
        .downcast_ref::<T>()
        .ok_or_else(|| format!("the value is not a `{}`", std::any::type_name::<T>()))?;
    rmp_serde::encode::write(out, t).map_err(|e| e.to_string())
}

/// Reads a `T` in the compact wire format into a value.
///
/// # Errors
/// Bytes that do not describe a `T`: the format's message.
pub fn unpack<T: serde::de::DeserializeOwned + Send + Sync + 'static>(bytes: &[u8]) -> Result<Value, String> {
    rmp_serde::from_slice::<T>(bytes)
        .map(value)
        .map_err(|e| format!("not a valid `{}`: {e}", std::any::type_name::<T>()))
}

/// A task result where it lives: a typed value in this process, bytes in its task's
/// codec, or a reference to data a backend holds (in another process). The scheduler
/// keeps results in this form and decodes (or fetches) one only where it is needed: a
/// map needs a result's length and elements, a reduce all of its parts, a task run in
/// this process its inputs as values. See [`Data::form`].
///
/// It is one pointer wide, as a [`Value`] is (a map can hold millions): the forms other
/// than a local value are kept behind the same pointer.
#[derive(Clone)]
pub struct Data(Value);

/// The forms of a [`Data`].
#[derive(Debug)]
pub enum Form<'a> {
    /// A typed value in this process.
    Local(&'a Value),
    /// Bytes in the producing task's codec, decoded once, on first use.
    Encoded(&'a Encoded),
    /// Data a backend holds: only that backend can read it.
    Remote(&'a RemoteRef),
    /// A list or tuple built of parts (a reduce, a gathered input) of which at least one
    /// is held by a backend: built where it is read.
    Parts(&'a Parts),
}

/// The forms other than a local value, behind the [`Data`]'s pointer.
enum Elsewhere {
    Encoded(Encoded),
    Remote(RemoteRef),
    Parts(Parts),
}

/// A list or tuple (a reduce into `Vec<T>`, a gathered tuple or array) whose parts are
/// not all in this process: kept as its parts, so a backend that holds them builds it
/// there (see [`Form::Parts`]).
pub struct Parts {
    parts: Vec<Data>,
    /// Per part: how a part that is a value here is written in the wire format, when
    /// known (the producing task's codec).
    pack: Vec<Option<crate::task::EncodeFn>>,
    collect: crate::graph::CollectFn,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.parts).finish()
    }
}

impl Parts {
    /// Each part, with how it is written in the wire format when it is a value here.
    pub fn iter(&self) -> impl Iterator<Item = (&Data, Option<crate::task::EncodeFn>)> {
        self.parts
            .iter()
            .zip(self.pack.iter().chain(std::iter::repeat(&None)))
            .map(|(d, p)| (d, *p))
    }
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.form() {
            Form::Local(_) => f.write_str("Local(..)"),
            Form::Encoded(e) => write!(f, "Encoded({} bytes)", e.bytes.len()),
            Form::Remote(r) => f.debug_tuple("Remote").field(r).finish(),
            Form::Parts(p) => f.debug_tuple("Parts").field(p).finish(),
        }
    }
}

/// A result as bytes in its task's codec.
pub struct Encoded {
    bytes: Vec<u8>,
    decode: crate::task::DecodeFn,
    decoded: std::sync::OnceLock<Result<Value, String>>,
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("bytes", &self.bytes.len())
            .field("decoded", &self.decoded.get().is_some())
            .finish()
    }
}

impl Encoded {
    /// Bytes that `decode` (the producing task's `decode_output`) reads.
    pub fn new(bytes: Vec<u8>, decode: crate::task::DecodeFn) -> Self {
        Encoded {
            bytes,
            decode,
            decoded: std::sync::OnceLock::new(),
        }
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The value, decoded on the first call.
    ///
    /// # Errors
    /// The bytes are not a value of the task's output type: the codec's message.
    pub fn value(&self) -> Result<&Value, &str> {
        self.decoded
            .get_or_init(|| (self.decode)(&self.bytes))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// A reference to a result a backend holds: the backend's key for it and, for a list,
/// its length (known without fetching the list), or an element of such a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRef {
    /// The backend's key for the result (for an element: the list's), shared by every
    /// reference to it: the backend lets the data go when the last one is dropped.
    pub key: Arc<RemoteKey>,
    /// For an element of a list held by the backend: its index in each enclosing list.
    pub path: Vec<u32>,
    /// The length of a list, when the backend reported it.
    pub len: Option<usize>,
}

impl RemoteRef {
    /// The whole result held under `key`, a list of `len` elements when `len` is known.
    pub fn new(key: RemoteKey, len: Option<usize>) -> Self {
        RemoteRef {
            key: Arc::new(key),
            path: Vec::new(),
            len,
        }
    }
}

/// A backend's key for data it holds, and what to do once nothing refers to it any more
/// (a Dask future released, so the cluster frees the data and never computes it again).
pub struct RemoteKey {
    key: String,
    release: Option<Release>,
}

/// What a [`RemoteKey`] calls with its key once nothing refers to it.
type Release = Box<dyn Fn(&str) + Send + Sync>;

impl RemoteKey {
    /// `key`, with `release` called with it when the last reference is dropped.
    pub fn new(key: impl Into<String>, release: impl Fn(&str) + Send + Sync + 'static) -> Self {
        RemoteKey {
            key: key.into(),
            release: Some(Box::new(release)),
        }
    }

    /// `key`, with nothing to do when it is dropped.
    pub fn unmanaged(key: impl Into<String>) -> Self {
        RemoteKey {
            key: key.into(),
            release: None,
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

impl Drop for RemoteKey {
    fn drop(&mut self) {
        if let Some(release) = &self.release {
            release(&self.key);
        }
    }
}

impl std::fmt::Debug for RemoteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

impl PartialEq for RemoteKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for RemoteKey {}

/// Why a result cannot be had in the form asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Encoded bytes that do not decode.
    #[error("its stored bytes cannot be read: {0}")]
    Undecodable(String),
    /// Data a backend holds, asked for in this process.
    #[error(
        "it is held by the backend that produced it (`{0}`) and cannot be read in this process; \
         run the tasks that read it on that backend"
    )]
    Remote(String),
    /// A remote list whose length the backend did not report, mapped over.
    #[error(
        "it is held by the backend that produced it (`{0}`), which did not report its length \
         (only a list, set or array can be mapped over)"
    )]
    UnknownLength(String),
}

impl Data {
    /// A typed value in this process.
    #[inline]
    pub fn local(v: Value) -> Self {
        Data(v)
    }

    /// Bytes in the producing task's codec.
    pub fn encoded(e: Encoded) -> Self {
        Data(Arc::new(Elsewhere::Encoded(e)))
    }

    /// A reference to data a backend holds.
    pub fn remote(r: RemoteRef) -> Self {
        Data(Arc::new(Elsewhere::Remote(r)))
    }

    /// Where the result lives.
    #[inline]
    pub fn form(&self) -> Form<'_> {
        match self.0.downcast_ref::<Elsewhere>() {
            None => Form::Local(&self.0),
            Some(Elsewhere::Encoded(e)) => Form::Encoded(e),
            Some(Elsewhere::Remote(r)) => Form::Remote(r),
            Some(Elsewhere::Parts(p)) => Form::Parts(p),
        }
    }

    /// The data in whatever form it is, as one pointer: what a backend that may hold
    /// data itself receives as a task run's input (the engine hands attempts their
    /// inputs as [`Value`]s). [`Data::from_raw`] gives it back.
    #[inline]
    pub fn into_raw(self) -> Value {
        self.0
    }

    /// Data from [`Data::into_raw`] (or any value: a typed value is a local one).
    #[inline]
    pub fn from_raw(v: Value) -> Self {
        Data(v)
    }

    /// The value, in this process: decoded (once) from encoded bytes.
    ///
    /// # Errors
    /// [`DataError::Undecodable`] for bytes that do not decode, [`DataError::Remote`] for
    /// data a backend holds.
    pub fn to_local(&self) -> Result<Value, DataError> {
        match self.form() {
            Form::Local(v) => Ok(Arc::clone(v)),
            Form::Encoded(e) => e
                .value()
                .cloned()
                .map_err(|m| DataError::Undecodable(m.to_owned())),
            Form::Remote(r) => Err(DataError::Remote(r.key.as_str().to_owned())),
            Form::Parts(p) => {
                let values = p
                    .parts
                    .iter()
                    .map(Data::to_local)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((p.collect)(values))
            }
        }
    }

    /// As [`Data::to_local`], moving a local value out.
    ///
    /// # Errors
    /// As [`Data::to_local`].
    #[inline]
    pub fn into_local(self) -> Result<Value, DataError> {
        if self.0.is::<Elsewhere>() {
            self.to_local()
        } else {
            Ok(self.0)
        }
    }

    /// The value if it is a value here (decoded bytes included), borrowed.
    pub fn local_ref(&self) -> Option<&Value> {
        match self.form() {
            Form::Local(v) => Some(v),
            Form::Encoded(e) => e.value().ok(),
            Form::Remote(_) | Form::Parts(_) => None,
        }
    }

    /// The elements of a list, one per child of a map over it: split with `split` here,
    /// or, for a list a backend holds, references to its elements (only its length is
    /// read, never the list).
    ///
    /// # Errors
    /// As [`Data::to_local`]; [`DataError::UnknownLength`] for a remote list of unknown
    /// length.
    pub fn elements(self, split: crate::graph::SplitFn) -> Result<Vec<Data>, DataError> {
        if let Form::Remote(r) = self.form() {
            let len = r
                .len
                .ok_or_else(|| DataError::UnknownLength(r.key.as_str().to_owned()))?;
            return Ok((0..len)
                .map(|i| {
                    let mut path = r.path.clone();
                    path.push(i as u32);
                    Data::remote(RemoteRef {
                        key: Arc::clone(&r.key),
                        path,
                        len: None,
                    })
                })
                .collect());
        }
        Ok(split(self.into_local()?).into_iter().map(Data).collect())
    }

    /// Builds one value out of parts with `collect` (a reduce into a `Vec<T>`, a tuple):
    /// here when every part is here, else kept as its parts ([`Form::Parts`]), for a
    /// backend that holds them to build; `pack(i)` writes part `i` in the wire format
    /// when it is a value here (the producing task's codec, when known).
    ///
    /// # Errors
    /// As [`Data::to_local`], for the first part that cannot be read here.
    pub fn collect(
        parts: Vec<Data>,
        collect: crate::graph::CollectFn,
        pack: impl Fn(usize) -> Option<crate::task::EncodeFn>,
    ) -> Result<Data, DataError> {
        if parts
            .iter()
            .any(|p| matches!(p.form(), Form::Remote(_) | Form::Parts(_)))
        {
            let pack = (0..parts.len()).map(pack).collect();
            return Ok(Data(Arc::new(Elsewhere::Parts(Parts { parts, pack, collect }))));
        }
        let values = parts
            .into_iter()
            .map(Data::into_local)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Data(collect(values)))
    }
}

impl From<Value> for Data {
    #[inline]
    fn from(v: Value) -> Self {
        Data(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_u64s(v: Value) -> Vec<Value> {
        take::<Vec<u64>>(v)
            .map(|xs| xs.into_iter().map(value).collect())
            .unwrap_or_default()
    }

    fn sum(parts: Vec<Value>) -> Value {
        value(parts.iter().filter_map(|p| borrow::<u64>(p).ok()).sum::<u64>())
    }

    fn u64_of(d: &Data) -> Option<u64> {
        d.local_ref().and_then(|v| v.downcast_ref::<u64>()).copied()
    }

    fn remote(len: Option<usize>) -> Data {
        Data::remote(RemoteRef::new(RemoteKey::unmanaged("add1-7"), len))
    }

    #[test]
    fn a_result_is_as_small_as_a_value() {
        assert_eq!(
            std::mem::size_of::<Option<Data>>(),
            std::mem::size_of::<Option<Value>>()
        );
    }

    #[test]
    fn encoded_bytes_are_decoded_once_where_needed() {
        let d = Data::encoded(Encoded::new(b"[1,2,3]".to_vec(), decode_json::<Vec<u64>>));
        let Form::Encoded(e) = d.form() else {
            unreachable!()
        };
        assert!(e.decoded.get().is_none(), "nothing decodes a result nobody reads");
        let elements = d.clone().elements(split_u64s).expect("decodes");
        assert_eq!(
            elements.iter().map(u64_of).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(3)]
        );
        assert!(e.decoded.get().is_some());
        let total = Data::collect(elements, sum, |_| None).expect("all local");
        assert_eq!(u64_of(&total), Some(6));

        let bad = Data::encoded(Encoded::new(b"{".to_vec(), decode_json::<u64>));
        assert!(matches!(bad.to_local(), Err(DataError::Undecodable(m)) if m.contains("not a valid `u64`")));
        assert!(bad.local_ref().is_none());
    }

    #[test]
    fn a_remote_list_is_mapped_by_its_length_without_being_read() {
        let elements = remote(Some(3)).elements(split_u64s).expect("its length is known");
        let refs: Vec<_> = elements
            .iter()
            .map(|e| match e.form() {
                Form::Remote(r) => (r.key.as_str().to_owned(), r.path.clone()),
                other => panic!("an element of a remote list is remote: {other:?}"),
            })
            .collect();
        let key = || "add1-7".to_owned();
        assert_eq!(refs, [(key(), vec![0]), (key(), vec![1]), (key(), vec![2])]);
        assert_eq!(
            remote(None).elements(split_u64s).err(),
            Some(DataError::UnknownLength("add1-7".into()))
        );
        // Parts of which one is remote stay parts; reading them here is an error that
        // says what to do, never a panic.
        let parts = Data::collect(vec![Data::local(value(1u64)), remote(None)], sum, |_| None)
            .expect("kept as parts");
        assert!(matches!(parts.form(), Form::Parts(p) if p.iter().count() == 2));
        let err = parts.to_local().err();
        assert_eq!(err, Some(DataError::Remote("add1-7".into())));
        assert!(err
            .map(|e| e.to_string())
            .is_some_and(|m| m.contains("run the tasks that read it on that backend")));
    }

    #[test]
    fn remote_data_is_released_once_nothing_refers_to_it() {
        let released = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = Arc::clone(&released);
        let key = RemoteKey::new("tideflow-9", move |k| {
            seen.lock().map(|mut v| v.push(k.to_owned())).ok();
        });
        let list = Data::remote(RemoteRef::new(key, Some(2)));
        let elements = list.clone().elements(split_u64s).expect("length known");
        drop(list);
        let gathered = Data::collect(elements, sum, |_| None).expect("kept as parts");
        assert!(
            released.lock().map(|v| v.is_empty()).unwrap_or(false),
            "still referred to"
        );
        drop(gathered);
        assert_eq!(*released.lock().expect("not poisoned"), ["tideflow-9"]);
    }
}
