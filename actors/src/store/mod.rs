//! The store port: where clouds, resources and findings live.
//!
//! Owns: the [`Store`] trait every storage backend implements, its query and error types
//! (with the stored forms of users, API keys, sessions and audit entries), [`open_with`],
//! [`open`] and [`migrate`], which pick the backend a `store.url` names, and the stored
//! form of cloud credentials: sealed with the store's [`CredentialsCipher`] on every
//! write, opened on every read, and plaintext rows of earlier versions sealed when a
//! store opens ([`open_with`]). Also the API's read form of a resource ([`StoredResource`],
//! tags and properties as stored text) and the [`CountCache`] of exact listing totals each
//! backend keeps per generation. The embedded
//! backend is SQLite ([`sqlite`]); the cluster's backend is MySQL ([`mysql`]); both pass the
//! same contract suite ([`contract`]).
//!
//! Must never: hold a resource set in memory that grows with the estate (scans are keyset
//! pages; harvest writes arrive in batches), answer a listing total counted at another
//! generation than the store's current one, write credentials unsealed, or quote stored
//! credentials in an error or a log line.

pub mod mysql;
pub mod sqlite;

#[cfg(test)]
pub mod contract;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use crate::crypto::{CredentialsCipher, KeyOrigin};
use palisade_proto::{
    CloudAccount, CloudId, Credentials, Finding, FindingState, InsightId, Provider, Resource,
    ResourceType, ResourceUid, Timestamp,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store url {0:?} is not supported")]
    UnsupportedUrl(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store query failed: {0}")]
    Query(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("store schema version {found} is newer than this build knows ({known})")]
    UnknownSchema { found: i64, known: i64 },
    /// The node's credentials key is not the one that sealed the stored credentials.
    #[error("credentials key: {0}")]
    CredentialsKey(String),
}

/// One page of a listing, with the total number of matches.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub total: u64,
    pub items: Vec<T>,
}

/// A page of resources as the API's JSON (see [`Store::list_resources_json`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsonPage {
    /// Matches of the filters in all pages.
    pub total: u64,
    /// Resources on this page.
    pub items: usize,
    /// The resources, each an object as its [`StoredResource`] serialises, joined by
    /// commas: the inside of a JSON array.
    pub json: Vec<u8>,
}

impl Page<StoredResource> {
    /// The page with its resources decoded.
    pub(crate) fn decode(self) -> Result<Page<Resource>, StoreError> {
        Ok(Page {
            total: self.total,
            items: self
                .items
                .into_iter()
                .map(StoredResource::decode)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A resource as the API answers it: its tags and properties are the stored JSON text,
/// passed through without being parsed into values and encoded again. It serialises
/// exactly as the [`Resource`] it was stored from (stores write tags and properties as
/// `serde_json` encodes them, and read them back as written).
#[derive(Clone, Debug, Serialize)]
pub struct StoredResource {
    pub uid: ResourceUid,
    pub cloud: CloudId,
    pub provider: Provider,
    pub account: String,
    pub region: String,
    #[serde(rename = "type")]
    pub rtype: ResourceType,
    pub id: String,
    pub name: String,
    /// A JSON object of strings.
    pub tags: Box<RawValue>,
    /// The API's own description of the resource, as stored.
    pub properties: Box<RawValue>,
    #[serde(serialize_with = "ms_time::serialize")]
    pub first_seen: Timestamp,
    #[serde(serialize_with = "ms_time::serialize")]
    pub last_seen: Timestamp,
    #[serde(serialize_with = "ms_time::serialize_opt")]
    pub deleted_at: Option<Timestamp>,
}

/// Stored times as JSON, the text chrono's serde writes for them, without its formatting
/// machinery: a listing page writes three per resource, and through `fmt` they were half
/// the cost of encoding the page.
mod ms_time {
    use chrono::Timelike;
    use palisade_proto::Timestamp;
    use serde::Serializer;

    /// `2026-12-01T00:34:24.905Z`, or without the fraction on a whole second.
    pub(super) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 24];
        match write(t, &mut buf) {
            Some(text) => s.serialize_str(text),
            // a year of other than four digits, a leap second or sub-millisecond digits:
            // chrono's own text
            None => serde::Serialize::serialize(t, s),
        }
    }

    pub(super) fn serialize_opt<S: Serializer>(
        t: &Option<Timestamp>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// The text of `t` in `buf`, when it is a time of millisecond precision in years 0 to 9999.
    pub(super) fn write<'a>(t: &Timestamp, buf: &'a mut [u8; 24]) -> Option<&'a str> {
        let nanos = t.nanosecond();
        if nanos >= 1_000_000_000 || !nanos.is_multiple_of(1_000_000) {
            return None;
        }
        write_ms(t.timestamp_millis(), buf)
    }

    /// The text of the time `ms` milliseconds from the epoch in `buf`, when it is in years
    /// 0 to 9999: what [`write`] writes for that time, without making one.
    pub(super) fn write_ms(ms: i64, buf: &mut [u8; 24]) -> Option<&str> {
        let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return None;
        }
        let put = |buf: &mut [u8; 24], at: usize, width: usize, v: i64| {
            let mut v = v;
            for i in (at..at + width).rev() {
                buf[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        let secs = ms_of_day / 1000;
        put(buf, 0, 4, year);
        buf[4] = b'-';
        put(buf, 5, 2, month);
        buf[7] = b'-';
        put(buf, 8, 2, day);
        buf[10] = b'T';
        put(buf, 11, 2, secs / 3600);
        buf[13] = b':';
        put(buf, 14, 2, secs / 60 % 60);
        buf[16] = b':';
        put(buf, 17, 2, secs % 60);
        let end = if ms_of_day % 1000 == 0 {
            19
        } else {
            buf[19] = b'.';
            put(buf, 20, 3, ms_of_day % 1000);
            23
        };
        buf[end] = b'Z';
        std::str::from_utf8(&buf[..=end]).ok()
    }

    /// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
    /// (Howard Hinnant's `civil_from_days`).
    fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }
}

impl StoredResource {
    /// The stored form of a decoded resource (for a backend without a text read path).
    pub fn encode(r: &Resource) -> Result<StoredResource, StoreError> {
        let json = |what: &str, text: serde_json::Result<String>| {
            text.and_then(RawValue::from_string)
                .map_err(|e| StoreError::Query(format!("encode {what} of {}: {e}", r.uid)))
        };
        Ok(StoredResource {
            uid: r.uid.clone(),
            cloud: r.cloud.clone(),
            provider: r.provider,
            account: r.account.clone(),
            region: r.region.clone(),
            rtype: r.rtype,
            id: r.id.clone(),
            name: r.name.clone(),
            tags: json("tags", serde_json::to_string(&r.tags))?,
            properties: json("properties", serde_json::to_string(&r.properties))?,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            deleted_at: r.deleted_at,
        })
    }

    /// The resource with its tags and properties parsed.
    pub fn decode(self) -> Result<Resource, StoreError> {
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("resource {}: {what}: {e}", self.uid))
        };
        let tags = match self.tags.get() {
            "{}" => BTreeMap::new(),
            text => serde_json::from_str(text).map_err(|e| corrupt("tags", e))?,
        };
        let properties =
            serde_json::from_str(self.properties.get()).map_err(|e| corrupt("properties", e))?;
        Ok(Resource {
            uid: self.uid,
            cloud: self.cloud,
            provider: self.provider,
            account: self.account,
            region: self.region,
            rtype: self.rtype,
            id: self.id,
            name: self.name,
            tags,
            properties,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            deleted_at: self.deleted_at,
        })
    }
}

/// Listing totals an interface node keeps by default (see [`CountCache`]).
pub const COUNT_CACHE_ENTRIES: usize = 256;

/// Longest filter key a [`CountCache`] keeps, in bytes (tag filters are client text).
const COUNT_KEY_MAX: usize = 1024;

/// The exact totals of recent listings, per filter, valid for one **generation** of the
/// store: a number the store advances whenever a write that could change a total has
/// committed (each backend says how). A total is answered from here only for the
/// generation it was counted at, so it is as exact as a `COUNT(*)`: the first listing
/// after any such write counts again. Bounded: at most its capacity of filters, all
/// dropped when the generation moves.
#[derive(Debug)]
pub(crate) struct CountCache {
    state: Mutex<CountState>,
}

#[derive(Debug)]
struct CountState {
    capacity: usize,
    generation: u64,
    totals: HashMap<String, u64>,
}

impl CountCache {
    pub(crate) fn new(capacity: usize) -> CountCache {
        CountCache {
            state: Mutex::new(CountState {
                capacity,
                generation: 0,
                totals: HashMap::new(),
            }),
        }
    }

    /// Keep at most `capacity` totals (0: none, every listing counts).
    pub(crate) fn set_capacity(&self, capacity: usize) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.capacity = capacity;
        s.totals.clear();
        s.totals.shrink_to_fit();
    }

    /// The total of filter `key` counted at `generation`, if it is kept.
    pub(crate) fn get(&self, generation: u64, key: &str) -> Option<u64> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.generation != generation {
            return None;
        }
        s.totals.get(key).copied()
    }

    /// Keep the total of filter `key`, counted at `generation`. Another generation
    /// replaces every kept total (a store's generations only move forward, but a listing
    /// that read an older one may finish late: that costs a count, never a wrong total).
    pub(crate) fn put(&self, generation: u64, key: &str, total: u64) {
        if key.len() > COUNT_KEY_MAX {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.capacity == 0 {
            return;
        }
        if s.generation != generation {
            s.generation = generation;
            s.totals.clear();
        }
        if s.totals.len() >= s.capacity && !s.totals.contains_key(key) {
            // any one: the cache holds the filters of one generation, a short time
            if let Some(old) = s.totals.keys().next().cloned() {
                s.totals.remove(&old);
            }
        }
        s.totals.insert(key.to_owned(), total);
    }
}

/// Where a listing's total came from, counted as `palisade_list_totals_total{source}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TotalSource {
    /// The page was the last one: its offset plus its length.
    Page,
    /// The [`CountCache`], for the store's current generation.
    Cache,
    /// A `COUNT(*)`.
    Count,
}

impl TotalSource {
    pub(crate) fn record(self) {
        let source = match self {
            TotalSource::Page => "page",
            TotalSource::Cache => "cache",
            TotalSource::Count => "count",
        };
        crate::metrics::inc("palisade_list_totals_total", &[("source", source)]);
    }
}

/// The total a page implies on its own: a page shorter than its limit that holds rows (or
/// starts at offset 0) is the last one, so the matches are its offset plus its rows.
pub(crate) fn total_of_last_page(offset: u64, limit: u32, rows: usize) -> Option<u64> {
    let rows = rows as u64;
    (rows < u64::from(limit) && (rows > 0 || offset == 0)).then(|| offset.saturating_add(rows))
}

/// Filters for listing resources. Deleted resources are left out unless asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceQuery {
    pub cloud: Option<CloudId>,
    pub rtype: Option<ResourceType>,
    pub region: Option<String>,
    /// `KEY` (the tag is present) or `KEY=VALUE`.
    pub tag: Option<String>,
    pub include_deleted: bool,
    pub order: ResourceOrder,
    /// The whole order reversed (its tie-breakers too).
    pub descending: bool,
    pub limit: u32,
    pub offset: u64,
}

/// What a resource listing is ordered by. Each order ends in `uid`, so pages never overlap.
/// The columns come from this fixed list only: no client text ever reaches `ORDER BY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResourceOrder {
    /// (type, region, id): the live-resource indexes' own order, read without a sort.
    #[default]
    Type,
    Region,
    Cloud,
    Id,
    Name,
    Uid,
    FirstSeen,
    LastSeen,
}

impl ResourceOrder {
    fn columns(self) -> &'static [&'static str] {
        match self {
            ResourceOrder::Type => &["rtype", "region", "id", "uid"],
            ResourceOrder::Region => &["region", "rtype", "id", "uid"],
            ResourceOrder::Cloud => &["cloud", "rtype", "region", "id", "uid"],
            ResourceOrder::Id => &["id", "uid"],
            ResourceOrder::Name => &["name", "uid"],
            ResourceOrder::Uid => &["uid"],
            ResourceOrder::FirstSeen => &["first_seen", "uid"],
            ResourceOrder::LastSeen => &["last_seen", "uid"],
        }
    }
}

impl ResourceQuery {
    /// The filters alone, as a [`CountCache`] key: queries with one key have one total.
    pub(crate) fn count_key(&self) -> String {
        format!(
            "{:?} {:?} {:?} {:?} {}",
            self.cloud.as_ref().map(CloudId::as_str),
            self.rtype.map(ResourceType::as_str),
            self.region,
            self.tag,
            self.include_deleted
        )
    }

    /// Whether an index yields this listing's rows in its order: the natural order of live
    /// resources, which both live-resource indexes hold after their equality prefix.
    pub(crate) fn live_in_index_order(&self) -> bool {
        self.order == ResourceOrder::Type && !self.include_deleted
    }

    /// The `ORDER BY` list of this listing (both backends' SQL). Columns the filters fix
    /// to one value are left out: the order is the same, and an index that has them as an
    /// equality prefix then yields rows in order without a sort.
    pub(crate) fn order_by(&self) -> String {
        let fixed = |c: &str| match c {
            "rtype" => self.rtype.is_some(),
            "region" => self.region.is_some(),
            "cloud" => self.cloud.is_some(),
            _ => false,
        };
        let columns: Vec<&str> = self
            .order
            .columns()
            .iter()
            .copied()
            .filter(|c| !fixed(c))
            .collect();
        order_list(&columns, self.descending)
    }
}

/// The SQL of one page of a listing (both backends). With a `key` column, the page is
/// chosen on the key and the sort columns alone, then joined back to its rows: a sort on a
/// column no index holds, or a deep offset, then carries 16-byte keys through the sort and
/// the skipped rows, not whole rows with their properties.
pub(crate) fn page_sql(
    table: &str,
    columns: &str,
    filter: &str,
    order: &str,
    key: Option<&str>,
) -> String {
    match key {
        None => format!("SELECT {columns} FROM {table}{filter} ORDER BY {order} LIMIT ? OFFSET ?"),
        Some(key) => format!(
            "SELECT {columns} FROM (SELECT {key} FROM {table}{filter} ORDER BY {order} \
             LIMIT ? OFFSET ?) AS page JOIN {table} USING ({key}) ORDER BY {order}"
        ),
    }
}

/// `a, b` or `a DESC, b DESC`.
fn order_list(columns: &[&str], descending: bool) -> String {
    let dir = if descending { " DESC" } else { "" };
    columns
        .iter()
        .map(|c| format!("{c}{dir}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Filters for listing findings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FindingQuery {
    pub insight: Option<InsightId>,
    pub resource_uid: Option<ResourceUid>,
    pub cloud: Option<CloudId>,
    pub state: Option<FindingState>,
    pub order: FindingOrder,
    /// The whole order reversed (its tie-breakers too).
    pub descending: bool,
    pub limit: u32,
    pub offset: u64,
}

/// What a finding listing is ordered by; each order ends in the key (insight, resource).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FindingOrder {
    /// (insight, resource uid): the primary key's order.
    #[default]
    Insight,
    /// The cloud's own id of the resource.
    Resource,
    ResourceType,
    Region,
    State,
    FirstSeen,
    /// The reported `last_seen` (see [`Store::list_findings`]), not the stored one.
    LastSeen,
}

/// The alias of the reported `last_seen` in both backends' finding listings.
pub(crate) const REPORTED_LAST_SEEN: &str = "reported_last_seen";

impl FindingQuery {
    /// The filters alone, as a [`CountCache`] key: queries with one key have one total.
    pub(crate) fn count_key(&self) -> String {
        format!(
            "{:?} {:?} {:?} {:?}",
            self.insight.as_ref().map(InsightId::as_str),
            self.resource_uid.as_ref().map(ResourceUid::as_str),
            self.cloud.as_ref().map(CloudId::as_str),
            self.state.map(FindingState::as_str)
        )
    }

    /// The `ORDER BY` list of this listing (both backends' SQL).
    pub(crate) fn order_by(&self) -> String {
        let lead: &[&str] = match self.order {
            FindingOrder::Insight => &[],
            FindingOrder::Resource => &["resource"],
            FindingOrder::ResourceType => &["resource_type"],
            FindingOrder::Region => &["region"],
            FindingOrder::State => &["state"],
            FindingOrder::FirstSeen => &["first_seen"],
            FindingOrder::LastSeen => &[REPORTED_LAST_SEEN],
        };
        let mut columns = lead.to_vec();
        columns.extend(["insight", "resource_uid"]);
        order_list(&columns, self.descending)
    }
}

/// Which live resources a scan walks: one cloud or all, some types or all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanQuery {
    pub cloud: Option<CloudId>,
    /// Empty means every type.
    pub types: Vec<ResourceType>,
    /// For [`Store::scan_raw`]: the fingerprint of the [`Facts`] the reader evaluates with.
    /// A row whose facts were written under it comes back with its facts in place of its
    /// properties; any other row, and every row when this is none, with its properties.
    pub facts: Option<i64>,
}

/// What a store keeps beside each resource for the compliance scan: the part of its
/// properties that the insights of one catalog read, so a compliance run reads a few
/// hundred bytes a resource instead of whole API documents (see [`Store::keep_facts`]).
///
/// Contract: for every resource, parsing the facts under the catalog's projection gives
/// what parsing the properties under it gives; a catalog that reads other parts of the
/// properties has another fingerprint.
pub trait Facts: Send + Sync + 'static {
    /// Names the projection: facts written under another fingerprint are never read as
    /// this one's.
    fn fingerprint(&self) -> i64;
    /// The facts of one resource from its properties JSON text; none when no insight reads
    /// resources of its type.
    fn extract(&self, rtype: ResourceType, properties: &str) -> Result<Option<String>, String>;
}

/// One keyset page of live resources as stored text, for evaluation: every row's text
/// columns are copied into one buffer, so reading a page allocates nothing per row and the
/// properties JSON is parsed only as far as the reader needs. A page is reused: pass the
/// previous one back to [`Store::scan_raw`] and it is cleared and refilled.
#[derive(Debug, Default)]
pub struct RawPage {
    buf: String,
    rows: Vec<RawRow>,
    /// One row's columns as bytes, checked as UTF-8 together ([`RawPage::push_bytes`]).
    scratch: Vec<u8>,
}

/// Byte ranges into [`RawPage::buf`] of one row's text columns, in [`RawField`] order.
#[derive(Debug, Clone, Copy)]
struct RawRow {
    rtype: ResourceType,
    provider: Provider,
    ends: [u32; RawField::COUNT],
}

/// The text columns of a [`RawPage`] row, in the order a backend pushes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawField {
    Uid,
    Cloud,
    Account,
    Region,
    Id,
    Name,
    /// The tags as a JSON object of strings.
    Tags,
    /// The properties as JSON text, or the row's facts (see [`ScanQuery::facts`]).
    Properties,
}

impl RawField {
    const COUNT: usize = 8;
    pub const ORDER: [RawField; RawField::COUNT] = [
        RawField::Uid,
        RawField::Cloud,
        RawField::Account,
        RawField::Region,
        RawField::Id,
        RawField::Name,
        RawField::Tags,
        RawField::Properties,
    ];
}

/// One row of a [`RawPage`], borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct RawResource<'a> {
    pub uid: &'a str,
    pub cloud: &'a str,
    pub provider: Provider,
    pub account: &'a str,
    pub region: &'a str,
    pub rtype: ResourceType,
    pub id: &'a str,
    pub name: &'a str,
    /// JSON object of strings.
    pub tags: &'a str,
    /// JSON text: the properties, or their facts where the scan asked for facts and the
    /// row has them under that fingerprint (the same under the catalog's projection).
    pub properties: &'a str,
}

impl RawPage {
    /// Empty the page, keeping its buffers.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.rows.clear();
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Append one row; `fields` yields the text of each [`RawField::ORDER`] column in turn.
    pub fn push<'s>(
        &mut self,
        rtype: ResourceType,
        provider: Provider,
        fields: impl IntoIterator<Item = &'s str>,
    ) -> Result<(), StoreError> {
        let mut columns: [&[u8]; RawField::COUNT] = [&[]; RawField::COUNT];
        let mut n = 0;
        for (slot, text) in columns.iter_mut().zip(fields) {
            *slot = text.as_bytes();
            n += 1;
        }
        if n != RawField::COUNT {
            return Err(StoreError::Query(format!(
                "raw row has {n} fields, expected {}",
                RawField::COUNT
            )));
        }
        self.push_bytes(rtype, provider, columns)
    }

    /// Append one row from the bytes of its text columns, in [`RawField::ORDER`]: the row
    /// is checked as UTF-8 once, not column by column, and each column must still be whole
    /// characters.
    pub fn push_bytes(
        &mut self,
        rtype: ResourceType,
        provider: Provider,
        fields: [&[u8]; RawField::COUNT],
    ) -> Result<(), StoreError> {
        let corrupt = || {
            StoreError::Corrupt(format!(
                "resource {}: a text column is not UTF-8",
                String::from_utf8_lossy(fields[0])
            ))
        };
        self.scratch.clear();
        for field in fields {
            self.scratch.extend_from_slice(field);
        }
        let text = std::str::from_utf8(&self.scratch).map_err(|_| corrupt())?;
        let mut ends = [0u32; RawField::COUNT];
        let (mut within, start) = (0, self.buf.len());
        for (slot, field) in ends.iter_mut().zip(fields) {
            within += field.len();
            if !text.is_char_boundary(within) {
                return Err(corrupt());
            }
            *slot = u32::try_from(start + within)
                .map_err(|_| StoreError::Query("raw page exceeds 4 GiB".into()))?;
        }
        self.buf.push_str(text);
        self.rows.push(RawRow {
            rtype,
            provider,
            ends,
        });
        Ok(())
    }

    /// Append a decoded resource (for backends without a raw read path).
    pub fn push_resource(&mut self, r: &Resource) -> Result<(), StoreError> {
        let tags = serde_json::to_string(&r.tags)
            .map_err(|e| StoreError::Query(format!("encode tags: {e}")))?;
        let properties = serde_json::to_string(&r.properties)
            .map_err(|e| StoreError::Query(format!("encode properties: {e}")))?;
        self.push(
            r.rtype,
            r.provider,
            [
                r.uid.as_str(),
                r.cloud.as_str(),
                &r.account,
                &r.region,
                &r.id,
                &r.name,
                &tags,
                &properties,
            ],
        )
    }

    /// The row at `i`.
    pub fn get(&self, i: usize) -> Option<RawResource<'_>> {
        let row = self.rows.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.rows[i - 1].ends[RawField::COUNT - 1] as usize,
        };
        let mut spans = [""; RawField::COUNT];
        let mut from = start;
        for (span, &end) in spans.iter_mut().zip(&row.ends) {
            *span = self.buf.get(from..end as usize)?;
            from = end as usize;
        }
        let [uid, cloud, account, region, id, name, tags, properties] = spans;
        Some(RawResource {
            uid,
            cloud,
            provider: row.provider,
            account,
            region,
            rtype: row.rtype,
            id,
            name,
            tags,
            properties,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = RawResource<'_>> + '_ {
        (0..self.rows.len()).filter_map(|i| self.get(i))
    }

    /// The uid of the last row.
    pub fn last_uid(&self) -> Option<ResourceUid> {
        self.len()
            .checked_sub(1)
            .and_then(|i| self.get(i))
            .map(|r| ResourceUid(r.uid.to_owned()))
    }
}

/// One row a backend read, column by column: what the shared decoders below need. Both
/// backends store the same columns in the same order, so a row decodes the same way on
/// either.
pub(crate) trait StoredRow {
    fn text(&self, idx: usize) -> Result<&str, StoreError>;
    fn int(&self, idx: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, idx: usize) -> Result<Option<i64>, StoreError>;

    /// Column `idx` as owned text, read once: a row that owns its values (MySQL's) hands
    /// the bytes over instead of copying them, and the column is gone from it afterwards.
    fn take_text(&mut self, idx: usize) -> Result<String, StoreError> {
        self.text(idx).map(str::to_owned)
    }
}

/// A borrowed row reads as the row; its text is copied when taken.
impl<R: StoredRow + ?Sized> StoredRow for &R {
    fn text(&self, idx: usize) -> Result<&str, StoreError> {
        (**self).text(idx)
    }

    fn int(&self, idx: usize) -> Result<i64, StoreError> {
        (**self).int(idx)
    }

    fn opt_int(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        (**self).opt_int(idx)
    }
}

/// A stored provider and type, parsed; an unknown one is corruption of resource `uid`.
pub(crate) fn stored_kind(
    uid: &str,
    provider: &str,
    rtype: &str,
) -> Result<(Provider, ResourceType), StoreError> {
    let provider = provider
        .parse()
        .map_err(|e: String| StoreError::Corrupt(format!("resource {uid}: provider: {e}")))?;
    Ok((provider, stored_type(uid, rtype)?))
}

/// A stored resource type.
pub(crate) fn stored_type(uid: &str, rtype: &str) -> Result<ResourceType, StoreError> {
    rtype
        .parse()
        .map_err(|e: String| StoreError::Corrupt(format!("resource {uid}: type: {e}")))
}

/// A stored time in milliseconds since the epoch.
pub(crate) fn time_from_ms(ms: i64, what: &str) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} {ms} is not a valid time")))
}

/// A row of `uid, cloud, provider, account, region, rtype, id, name, first_seen, last_seen,
/// deleted_at, tags, properties` as a resource.
pub(crate) fn resource_from_row(row: &impl StoredRow) -> Result<Resource, StoreError> {
    let uid = row.text(0)?;
    let corrupt = |what: &str, detail: String| {
        StoreError::Corrupt(format!("resource {uid}: {what}: {detail}"))
    };
    let (provider, rtype) = stored_kind(uid, row.text(2)?, row.text(5)?)?;
    let tags_json = row.text(11)?;
    let tags = if tags_json == "{}" {
        BTreeMap::new()
    } else {
        serde_json::from_str(tags_json).map_err(|e| corrupt("tags", e.to_string()))?
    };
    let properties =
        serde_json::from_str(row.text(12)?).map_err(|e| corrupt("properties", e.to_string()))?;
    Ok(Resource {
        uid: ResourceUid(uid.to_owned()),
        cloud: CloudId(row.text(1)?.to_owned()),
        provider,
        account: row.text(3)?.to_owned(),
        region: row.text(4)?.to_owned(),
        rtype,
        id: row.text(6)?.to_owned(),
        name: row.text(7)?.to_owned(),
        tags,
        properties,
        first_seen: time_from_ms(row.int(8)?, "first_seen")?,
        last_seen: time_from_ms(row.int(9)?, "last_seen")?,
        deleted_at: row
            .opt_int(10)?
            .map(|v| time_from_ms(v, "deleted_at"))
            .transpose()?,
    })
}

/// Bytes of a resource's JSON besides its tags and properties (keys, ids, times): what a
/// page's buffer is sized by, so that it is not copied as it grows.
pub(crate) const RESOURCE_JSON_OVERHEAD: usize = 384;

/// Bytes a listed resource's JSON is expected to take, to size its buffer up front before
/// its row is read: the overhead and small tags and properties.
pub(crate) const LISTED_JSON_BYTES_HINT: usize = RESOURCE_JSON_OVERHEAD + 256;

/// What a resource listing's filters fix to one value: columns its rows need not carry.
/// A stored resource is read from [`ListedColumns::columns`]: ten columns (uid, cloud,
/// account, id, name, first_seen, last_seen, deleted_at, tags, properties), then the region
/// and the type where the listing leaves them open. The provider follows from the type.
/// Both are compared byte for byte by both backends, so a fixed value is the stored one.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListedColumns {
    pub rtype: Option<ResourceType>,
    pub region: Option<String>,
}

impl ListedColumns {
    /// The columns a listing by `q` reads.
    pub(crate) fn of(q: &ResourceQuery) -> ListedColumns {
        ListedColumns {
            rtype: q.rtype,
            region: q.region.clone(),
        }
    }

    /// Where a row of [`ListedColumns::columns`] holds its region and its type: after the
    /// first ten, in the order `columns` adds them; none for one the listing fixes.
    pub(crate) fn open_columns(&self) -> (Option<usize>, Option<usize>) {
        let region = self.region.is_none().then_some(10);
        let rtype = self
            .rtype
            .is_none()
            .then_some(10 + usize::from(region.is_some()));
        (region, rtype)
    }

    /// The select list: `first_ten` (the ten columns above, in their order), then the
    /// open ones of region and type.
    pub(crate) fn columns(&self, first_ten: &str) -> String {
        let mut columns = first_ten.to_owned();
        if self.region.is_none() {
            columns.push_str(", region");
        }
        if self.rtype.is_none() {
            columns.push_str(", rtype");
        }
        columns
    }
}

/// A row of [`ListedColumns::columns`] as a [`StoredResource`]: the tags and properties are
/// checked to be JSON, not parsed into values; text columns are taken from the row (see
/// [`StoredRow::take_text`]).
pub(crate) fn stored_resource_from_row(
    row: &mut impl StoredRow,
    listed: &ListedColumns,
) -> Result<StoredResource, StoreError> {
    let uid = row.take_text(0)?;
    let (region_at, rtype_at) = listed.open_columns();
    let region = match (&listed.region, region_at) {
        (Some(region), _) => region.clone(),
        (None, at) => row.take_text(at.unwrap_or(10))?,
    };
    let rtype = match (listed.rtype, rtype_at) {
        (Some(rtype), _) => rtype,
        (None, at) => stored_type(&uid, row.text(at.unwrap_or(10))?)?,
    };
    let json = |text: String, what: &str| -> Result<Box<RawValue>, StoreError> {
        RawValue::from_string(text)
            .map_err(|e| StoreError::Corrupt(format!("resource {uid}: {what}: {e}")))
    };
    let tags = json(row.take_text(8)?, "tags")?;
    let properties = json(row.take_text(9)?, "properties")?;
    Ok(StoredResource {
        cloud: CloudId(row.take_text(1)?),
        provider: rtype.provider(),
        account: row.take_text(2)?,
        region,
        rtype,
        id: row.take_text(3)?,
        name: row.take_text(4)?,
        tags,
        properties,
        uid: ResourceUid(uid),
        first_seen: time_from_ms(row.int(5)?, "first_seen")?,
        last_seen: time_from_ms(row.int(6)?, "last_seen")?,
        deleted_at: row
            .opt_int(7)?
            .map(|v| time_from_ms(v, "deleted_at"))
            .transpose()?,
    })
}

/// A row of [`ListedColumns::columns`] appended to `out` as the API's JSON for the resource:
/// byte for byte what the [`StoredResource`] of the row serialises to, without building
/// one. The tags and properties are copied as stored: checked to be JSON first, unless
/// `json_guaranteed` (the store's own constraints refuse anything else).
pub(crate) fn write_listed_json(
    row: &impl StoredRow,
    listed: &ListedColumns,
    json_guaranteed: bool,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let uid = row.text(0)?;
    let (region_at, rtype_at) = listed.open_columns();
    let region = match (&listed.region, region_at) {
        (Some(region), _) => region.as_str(),
        (None, at) => row.text(at.unwrap_or(10))?,
    };
    let rtype = match (listed.rtype, rtype_at) {
        (Some(rtype), _) => rtype,
        (None, at) => stored_type(uid, row.text(at.unwrap_or(10))?)?,
    };
    let json = |idx: usize, what: &str| -> Result<&str, StoreError> {
        let text = row.text(idx)?;
        if json_guaranteed {
            // as `RawValue` holds it: without surrounding whitespace
            Ok(text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r')))
        } else {
            serde_json::from_str::<&RawValue>(text)
                .map(RawValue::get)
                .map_err(|e| StoreError::Corrupt(format!("resource {uid}: {what}: {e}")))
        }
    };
    let (tags, properties) = (json(8, "tags")?, json(9, "properties")?);
    let (first_seen, last_seen, deleted_at) = (row.int(5)?, row.int(6)?, row.opt_int(7)?);

    let mut put = |key: &[u8], value: JsonField<'_>| -> Result<(), JsonWriteError> {
        out.extend_from_slice(key);
        match value {
            JsonField::Str(s) => serde_json::to_writer(&mut *out, s)?,
            JsonField::Raw(s) => out.extend_from_slice(s.as_bytes()),
            JsonField::Time(None, _) => out.extend_from_slice(b"null"),
            JsonField::Time(Some(ms), what) => {
                let mut buf = [0u8; 24];
                match ms_time::write_ms(ms, &mut buf) {
                    Some(text) => {
                        out.push(b'"');
                        out.extend_from_slice(text.as_bytes());
                        out.push(b'"');
                    }
                    // outside years 0 to 9999: chrono's own text, if it is a time at all
                    None => serde_json::to_writer(&mut *out, &time_from_ms(ms, what)?)?,
                }
            }
        }
        Ok(())
    };
    (|| {
        put(b"{\"uid\":", JsonField::Str(uid))?;
        put(b",\"cloud\":", JsonField::Str(row.text(1)?))?;
        put(b",\"provider\":", JsonField::Str(rtype.provider().as_str()))?;
        put(b",\"account\":", JsonField::Str(row.text(2)?))?;
        put(b",\"region\":", JsonField::Str(region))?;
        put(b",\"type\":", JsonField::Str(rtype.as_str()))?;
        put(b",\"id\":", JsonField::Str(row.text(3)?))?;
        put(b",\"name\":", JsonField::Str(row.text(4)?))?;
        put(b",\"tags\":", JsonField::Raw(tags))?;
        put(b",\"properties\":", JsonField::Raw(properties))?;
        put(
            b",\"first_seen\":",
            JsonField::Time(Some(first_seen), "first_seen"),
        )?;
        put(
            b",\"last_seen\":",
            JsonField::Time(Some(last_seen), "last_seen"),
        )?;
        put(
            b",\"deleted_at\":",
            JsonField::Time(deleted_at, "deleted_at"),
        )?;
        put(b"}", JsonField::Raw(""))
    })()
    .map_err(|e| match e {
        JsonWriteError::Store(e) => e,
        JsonWriteError::Json(e) => StoreError::Query(format!("encode resource {uid}: {e}")),
    })
}

/// One value [`write_listed_json`] writes.
enum JsonField<'a> {
    /// A string, quoted and escaped.
    Str(&'a str),
    /// JSON text, as it is.
    Raw(&'a str),
    /// A time in milliseconds since the epoch as `ms_time` writes it, or null; and what
    /// the time is, for an error.
    Time(Option<i64>, &'a str),
}

/// Why [`write_listed_json`] stopped: a column it could not read, or the encoder.
enum JsonWriteError {
    Store(StoreError),
    Json(serde_json::Error),
}

impl From<StoreError> for JsonWriteError {
    fn from(e: StoreError) -> Self {
        JsonWriteError::Store(e)
    }
}

impl From<serde_json::Error> for JsonWriteError {
    fn from(e: serde_json::Error) -> Self {
        JsonWriteError::Json(e)
    }
}

/// A row of `insight, resource_uid, resource, resource_type, region, cloud, state,
/// first_seen, last_seen, resolved_at` as a finding.
pub(crate) fn finding_from_row(row: &impl StoredRow) -> Result<Finding, StoreError> {
    let insight = row.text(0)?;
    let rtype: ResourceType = row
        .text(3)?
        .parse()
        .map_err(|e: String| StoreError::Corrupt(format!("finding of {insight}: {e}")))?;
    let state = match row.text(6)? {
        "open" => FindingState::Open,
        "resolved" => FindingState::Resolved,
        other => {
            return Err(StoreError::Corrupt(format!(
                "finding of {insight}: unknown state {other:?}"
            )))
        }
    };
    Ok(Finding {
        insight: InsightId(insight.to_owned()),
        resource_uid: ResourceUid(row.text(1)?.to_owned()),
        resource: row.text(2)?.to_owned(),
        resource_type: rtype,
        region: row.text(4)?.to_owned(),
        cloud: CloudId(row.text(5)?.to_owned()),
        state,
        first_seen: time_from_ms(row.int(7)?, "first_seen")?,
        last_seen: time_from_ms(row.int(8)?, "last_seen")?,
        resolved_at: row
            .opt_int(9)?
            .map(|v| time_from_ms(v, "resolved_at"))
            .transpose()?,
    })
}

/// A row of `id, provider, name, regions, credentials, created_at` as a cloud account,
/// its credentials opened with `cipher`. Errors never quote the credentials.
pub(crate) fn cloud_from_row(
    row: &impl StoredRow,
    cipher: &CredentialsCipher,
) -> Result<CloudAccount, StoreError> {
    let id = row.text(0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("cloud {id}: {what} is not valid"));
    Ok(CloudAccount {
        id: CloudId(id.to_owned()),
        provider: row.text(1)?.parse().map_err(|_| corrupt("provider"))?,
        name: row.text(2)?.to_owned(),
        regions: serde_json::from_str(row.text(3)?).map_err(|_| corrupt("regions"))?,
        credentials: open_credentials(cipher, id, row.text(4)?)?,
        created_at: time_from_ms(row.int(5)?, "created_at")?,
    })
}

/// The stored text of a cloud's credentials: sealed for that cloud's row.
pub(crate) fn seal_credentials(
    cipher: &CredentialsCipher,
    cloud: &CloudAccount,
) -> Result<String, StoreError> {
    // Never quote the serde error: it could carry part of a secret.
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(&cloud.credentials)
            .map_err(|_| StoreError::Query("encode credentials failed".into()))?,
    );
    cipher.seal(cloud.id.as_str(), &plain).map_err(|e| {
        crate::metrics::inc("palisade_credentials_errors_total", &[("kind", "seal")]);
        StoreError::Query(format!("cloud {}: credentials: {e}", cloud.id))
    })
}

/// A cloud's credentials from their stored text: a sealed blob, opened for cloud `id`, or
/// the JSON of a row an earlier version wrote (sealed at the next open, see
/// [`upgrade_credentials`]). A blob that does not open is corruption of that cloud, logged
/// and counted.
fn open_credentials(
    cipher: &CredentialsCipher,
    id: &str,
    stored: &str,
) -> Result<Credentials, StoreError> {
    let invalid = || StoreError::Corrupt(format!("cloud {id}: credentials are not valid"));
    if !CredentialsCipher::is_sealed(stored) {
        return serde_json::from_str(stored).map_err(|_| invalid());
    }
    let plain = cipher.open(id, stored).map_err(|e| {
        let kind = match e {
            crate::crypto::CryptoError::Unauthentic => "unauthentic",
            _ => "malformed",
        };
        crate::metrics::inc("palisade_credentials_errors_total", &[("kind", kind)]);
        warn!(cloud = %id, error = %e, "stored credentials do not open");
        StoreError::Corrupt(format!("cloud {id}: credentials {e}"))
    })?;
    serde_json::from_slice(&plain).map_err(|_| invalid())
}

/// What [`upgrade_credentials`] asks a backend to write: `(id, stored text, sealed text)`
/// of each plaintext row, written only where the row still holds that text.
pub(crate) type Reseal = Vec<(String, String, String)>;

/// Check the stored credentials (`(id, stored text)` of every cloud) against the key a
/// store opens with, and plan the sealing of rows written unsealed by earlier versions.
///
/// A key that opens none of the sealed rows is not the key that sealed them: the store
/// refuses to open, before anything is written with it. A store opened with an
/// [`KeyOrigin::Ephemeral`] key (tests, `palisade migrate`) neither checks nor seals
/// anything, since its key dies with it.
pub(crate) fn upgrade_credentials(
    cipher: &CredentialsCipher,
    rows: Vec<(String, String)>,
) -> Result<Reseal, StoreError> {
    if *cipher.origin() == KeyOrigin::Ephemeral {
        return Ok(Vec::new());
    }
    let mut sealed = 0usize;
    let mut unopened: Vec<&str> = Vec::new();
    let mut plaintext = Vec::new();
    for (id, stored) in &rows {
        if CredentialsCipher::is_sealed(stored) {
            sealed += 1;
            if cipher.open(id, stored).is_err() {
                unopened.push(id);
            }
        } else {
            plaintext.push((id, stored));
        }
    }
    if sealed > 0 && unopened.len() == sealed {
        crate::metrics::inc(
            "palisade_credentials_errors_total",
            &[("kind", "wrong_key")],
        );
        return Err(StoreError::CredentialsKey(format!(
            "the configured key opens none of the {sealed} sealed cloud credentials in the \
             store: it is not the key that sealed them (every node needs that key, in \
             store.credentials_key or store.credentials_key_file)"
        )));
    }
    for id in &unopened {
        crate::metrics::inc(
            "palisade_credentials_errors_total",
            &[("kind", "unauthentic")],
        );
        warn!(cloud = %id, "stored credentials do not open with this key: enter them again");
    }
    let mut reseal = Vec::with_capacity(plaintext.len());
    for (id, stored) in plaintext {
        let Ok(credentials) = serde_json::from_str::<Credentials>(stored) else {
            warn!(cloud = %id, "stored credentials are neither sealed nor valid: left as they are");
            continue;
        };
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(&credentials)
                .map_err(|_| StoreError::Query("encode credentials failed".into()))?,
        );
        let text = cipher
            .seal(id, &plain)
            .map_err(|e| StoreError::Query(format!("cloud {id}: credentials: {e}")))?;
        reseal.push((id.clone(), stored.clone(), text));
    }
    Ok(reseal)
}

/// Log and count the plaintext rows a backend sealed.
pub(crate) fn report_resealed(n: u64) {
    if n > 0 {
        crate::metrics::count("palisade_credentials_resealed_total", &[], n);
        info!(
            clouds = n,
            "sealed the plaintext cloud credentials an earlier version stored"
        );
    }
}

/// A user as stored. `password_hash` is an argon2id PHC string, empty for a user who cannot
/// log in with a password (`bootstrap`).
#[derive(Clone, PartialEq)]
pub struct StoredUser {
    pub name: String,
    pub role: crate::auth::Role,
    pub password_hash: String,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// An API key as stored: its public id, owner, label and the SHA-256 hex of the secret.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredApiKey {
    pub id: String,
    pub user: String,
    pub name: String,
    pub hash: String,
    pub created_at: Timestamp,
    /// Last authenticated use, recorded at most about once a minute.
    pub last_used: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A login session as stored: the SHA-256 hex of its cookie's token and of its CSRF token.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSession {
    pub hash: String,
    pub user: String,
    pub csrf_hash: String,
    pub expires_at: Timestamp,
}

/// One audit log entry: who did what to which target, from where, with which outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// Assigned by the store (ascending); ignored by [`Store::append_audit`].
    pub id: u64,
    pub at: Timestamp,
    /// `user`, `user (key ID)`, or for a failed login the name that was tried.
    pub principal: String,
    /// Method and route pattern: `POST /v2/clouds/{id}/harvest`.
    pub action: String,
    /// The request's path: `/v2/clouds/7f.../harvest`.
    pub target: String,
    /// The client's address.
    pub client: String,
    /// The HTTP status of the answer.
    pub status: u16,
}

/// Longest stored audit fields, in characters; longer values are cut (they are client
/// input: a path, a tried user name).
pub const AUDIT_PRINCIPAL_CHARS: usize = 128;
pub const AUDIT_ACTION_CHARS: usize = 255;
pub const AUDIT_TARGET_CHARS: usize = 512;
pub const AUDIT_CLIENT_CHARS: usize = 64;

impl AuditEntry {
    /// The entry with every field cut to what the stores keep.
    pub fn bounded(mut self) -> AuditEntry {
        fn cut(s: &mut String, max: usize) {
            if let Some((i, _)) = s.char_indices().nth(max) {
                s.truncate(i);
            }
        }
        cut(&mut self.principal, AUDIT_PRINCIPAL_CHARS);
        cut(&mut self.action, AUDIT_ACTION_CHARS);
        cut(&mut self.target, AUDIT_TARGET_CHARS);
        cut(&mut self.client, AUDIT_CLIENT_CHARS);
        self
    }
}

/// A stored role, parsed.
fn stored_role(owner: &str, text: &str) -> Result<crate::auth::Role, StoreError> {
    text.parse()
        .map_err(|e: String| StoreError::Corrupt(format!("{owner}: {e}")))
}

/// A row of `name, role, password_hash, created_at` as a user.
pub(crate) fn user_from_row(row: &impl StoredRow) -> Result<StoredUser, StoreError> {
    let name = row.text(0)?;
    Ok(StoredUser {
        name: name.to_owned(),
        role: stored_role(&format!("user {name}"), row.text(1)?)?,
        password_hash: row.text(2)?.to_owned(),
        created_at: time_from_ms(row.int(3)?, "created_at")?,
    })
}

/// A row of `id, user_name, name, hash, created_at, last_used, revoked_at` as an API key.
pub(crate) fn api_key_from_row(row: &impl StoredRow) -> Result<StoredApiKey, StoreError> {
    Ok(StoredApiKey {
        id: row.text(0)?.to_owned(),
        user: row.text(1)?.to_owned(),
        name: row.text(2)?.to_owned(),
        hash: row.text(3)?.to_owned(),
        created_at: time_from_ms(row.int(4)?, "created_at")?,
        last_used: row
            .opt_int(5)?
            .map(|v| time_from_ms(v, "last_used"))
            .transpose()?,
        revoked_at: row
            .opt_int(6)?
            .map(|v| time_from_ms(v, "revoked_at"))
            .transpose()?,
    })
}

/// A row of [`API_KEY_COLUMNS`] followed by the owner's role.
pub(crate) fn owned_api_key_from_row(
    row: &impl StoredRow,
) -> Result<(StoredApiKey, crate::auth::Role), StoreError> {
    let key = api_key_from_row(row)?;
    let role = stored_role(&format!("user {}", key.user), row.text(7)?)?;
    Ok((key, role))
}

/// A row of `hash, user_name, csrf_hash, expires_at, role` as a session and its user's role.
pub(crate) fn session_from_row(
    row: &impl StoredRow,
) -> Result<(StoredSession, crate::auth::Role), StoreError> {
    let user = row.text(1)?;
    Ok((
        StoredSession {
            hash: row.text(0)?.to_owned(),
            user: user.to_owned(),
            csrf_hash: row.text(2)?.to_owned(),
            expires_at: time_from_ms(row.int(3)?, "expires_at")?,
        },
        stored_role(&format!("user {user}"), row.text(4)?)?,
    ))
}

/// A row of `id, occurred_at, principal, action, target, client, status` as an entry.
pub(crate) fn audit_from_row(row: &impl StoredRow) -> Result<AuditEntry, StoreError> {
    let id = row.int(0)?;
    Ok(AuditEntry {
        id: u64::try_from(id)
            .map_err(|_| StoreError::Corrupt(format!("audit id {id} is negative")))?,
        at: time_from_ms(row.int(1)?, "occurred_at")?,
        principal: row.text(2)?.to_owned(),
        action: row.text(3)?.to_owned(),
        target: row.text(4)?.to_owned(),
        client: row.text(5)?.to_owned(),
        status: u16::try_from(row.int(6)?)
            .map_err(|_| StoreError::Corrupt(format!("audit {id}: status out of range")))?,
    })
}

pub(crate) const USER_COLUMNS: &str = "name, role, password_hash, created_at";
pub(crate) const API_KEY_COLUMNS: &str =
    "id, user_name, name, hash, created_at, last_used, revoked_at";
pub(crate) const AUDIT_COLUMNS: &str = "id, occurred_at, principal, action, target, client, status";

/// The resources a finished harvest of one (cloud, type, region) no longer saw.
#[derive(Clone, Debug, PartialEq)]
pub struct DeletionSweep {
    pub cloud: CloudId,
    pub rtype: ResourceType,
    /// Only this region; none for a type harvested once per account.
    pub region: Option<String>,
    /// Resources last seen before this instant are marked deleted.
    pub seen_before: Timestamp,
    pub now: Timestamp,
}

/// Storage for everything Palisade keeps. Implementations are cheap to share (`Arc`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Add or replace a cloud account.
    async fn put_cloud(&self, cloud: &CloudAccount) -> Result<(), StoreError>;
    async fn get_cloud(&self, id: &CloudId) -> Result<Option<CloudAccount>, StoreError>;
    async fn list_clouds(&self) -> Result<Vec<CloudAccount>, StoreError>;
    /// Remove a cloud with its resources and findings; false when it did not exist.
    async fn delete_cloud(&self, id: &CloudId) -> Result<bool, StoreError>;

    /// Insert or refresh resources in one transaction. An existing resource keeps its
    /// `first_seen`, takes every other field from the batch and is no longer deleted.
    async fn upsert_resources(&self, batch: Vec<Resource>) -> Result<(), StoreError>;
    /// Mark deleted the live resources a harvest no longer saw; returns how many.
    async fn mark_deleted(&self, sweep: &DeletionSweep) -> Result<u64, StoreError>;
    /// [`Store::list_stored_resources`], decoded.
    async fn list_resources(&self, query: &ResourceQuery) -> Result<Page<Resource>, StoreError> {
        self.list_stored_resources(query).await?.decode()
    }
    /// One resource by Palisade uid, or else by the cloud's own id when that is unambiguous:
    /// [`Store::get_stored_resource`], decoded.
    async fn get_resource(&self, key: &str) -> Result<Option<Resource>, StoreError> {
        self.get_stored_resource(key)
            .await?
            .map(StoredResource::decode)
            .transpose()
    }
    /// The listing of [`Store::list_resources`] with tags and properties as stored text: the
    /// API's read path. `total` is exact: counted from the data the page was read from, or
    /// taken from the store's [`CountCache`] for the generation the page was read at (the
    /// backends override this; the default encodes decoded resources).
    async fn list_stored_resources(
        &self,
        query: &ResourceQuery,
    ) -> Result<Page<StoredResource>, StoreError> {
        let page = self.list_resources(query).await?;
        Ok(Page {
            total: page.total,
            items: page
                .items
                .iter()
                .map(StoredResource::encode)
                .collect::<Result<_, _>>()?,
        })
    }
    /// [`Store::list_stored_resources`] as the API's JSON (see [`JsonPage`]): the default
    /// encodes the stored resources; a backend may write them straight from its rows.
    async fn list_resources_json(&self, query: &ResourceQuery) -> Result<JsonPage, StoreError> {
        let page = self.list_stored_resources(query).await?;
        let mut json = Vec::with_capacity(
            page.items
                .iter()
                .map(|r| r.properties.get().len() + r.tags.get().len() + RESOURCE_JSON_OVERHEAD)
                .sum(),
        );
        for (i, r) in page.items.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            serde_json::to_writer(&mut json, r)
                .map_err(|e| StoreError::Query(format!("encode resource {}: {e}", r.uid)))?;
        }
        Ok(JsonPage {
            total: page.total,
            items: page.items.len(),
            json,
        })
    }
    /// [`Store::get_resource`] with tags and properties as stored text.
    async fn get_stored_resource(&self, key: &str) -> Result<Option<StoredResource>, StoreError> {
        self.get_resource(key)
            .await?
            .map(|r| StoredResource::encode(&r))
            .transpose()
    }
    /// Live resources ordered by uid, after `after`, at most `limit`: a keyset page.
    async fn scan_resources(
        &self,
        query: &ScanQuery,
        after: Option<&ResourceUid>,
        limit: usize,
    ) -> Result<Vec<Resource>, StoreError>;
    /// The same keyset page as [`Store::scan_resources`], as stored text in `page` (cleared
    /// first, then filled and handed back): the compliance run's read path. The default
    /// re-encodes decoded resources; backends override it to copy columns straight in.
    async fn scan_raw(
        &self,
        query: &ScanQuery,
        after: Option<&ResourceUid>,
        limit: usize,
        mut page: RawPage,
    ) -> Result<RawPage, StoreError> {
        page.clear();
        for r in self.scan_resources(query, after, limit).await? {
            page.push_resource(&r)?;
        }
        Ok(page)
    }
    /// From now on, write with each resource the facts `facts` extracts (see [`Facts`]).
    /// A store that keeps no facts ignores it; its scans then always carry properties.
    fn keep_facts(&self, facts: Arc<dyn Facts>) {
        let _ = facts;
    }
    /// Live resources per type.
    async fn count_resources_by_type(
        &self,
        cloud: Option<&CloudId>,
    ) -> Result<BTreeMap<ResourceType, u64>, StoreError>;

    /// Record findings that hold now, in one transaction: new ones open with
    /// `first_seen`; known ones get `last_seen` and are (re)opened.
    async fn upsert_findings(&self, batch: Vec<Finding>) -> Result<(), StoreError>;
    /// Resolve open findings (of one cloud, or all) not seen since `seen_before`: neither
    /// their stored `last_seen` nor the latest completed run covering them is that recent.
    async fn resolve_findings(
        &self,
        cloud: Option<&CloudId>,
        seen_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Reconcile the findings of one slice of the uid space with what an evaluation found,
    /// in one transaction, writing only what changed: a compliance run calls it once per
    /// keyset page, with the page's range `(after, through]` (`after` the previous page's
    /// last uid, none for the first page; `through` this page's last uid), and once more
    /// with `through = None` ("to the end") after the last page.
    ///
    /// Among the findings of `scope` (one cloud, or every cloud) whose `resource_uid` lies
    /// in the range, those in `holding` that are not open are inserted with `first_seen`,
    /// or reopened keeping the stored `first_seen` (`last_seen` from `holding`); open ones
    /// not in `holding` are resolved at `now`; open ones in `holding` are left untouched.
    /// The final call, with `through = None`, also resolves the findings of resources that
    /// vanished past the last page, and records that a run of `scope` completed at `now`.
    ///
    /// `last_seen` of an open finding therefore means "confirmed by the latest completed
    /// run": stores report it (in [`Store::list_findings`]) as the later of the stored
    /// value and the `now` of the latest completed run whose scope covers the finding's
    /// cloud, and a finding resolved by a later run keeps that confirmed time.
    /// Every finding of `holding` must lie in the range and in `scope`. Returns
    /// `(opened, resolved)`: findings inserted or reopened, findings resolved.
    async fn sync_findings(
        &self,
        scope: Option<&CloudId>,
        after: Option<&ResourceUid>,
        through: Option<&ResourceUid>,
        holding: Vec<Finding>,
        now: Timestamp,
    ) -> Result<(u64, u64), StoreError>;
    /// Findings; the `last_seen` of an open one is the later of its stored value and the
    /// latest completed compliance run covering it (see [`Store::sync_findings`]).
    async fn list_findings(&self, query: &FindingQuery) -> Result<Page<Finding>, StoreError>;
    /// The findings of one resource, open and resolved, at most `limit`, in the natural
    /// order of [`Store::list_findings`], without counting them all.
    async fn resource_findings(
        &self,
        uid: &ResourceUid,
        limit: u32,
    ) -> Result<Vec<Finding>, StoreError> {
        let query = FindingQuery {
            resource_uid: Some(uid.clone()),
            limit,
            ..FindingQuery::default()
        };
        Ok(self.list_findings(&query).await?.items)
    }
    /// Open findings per insight.
    async fn count_open_findings(&self) -> Result<BTreeMap<InsightId, u64>, StoreError>;
    /// Keep the totals of up to `entries` listing filters of each kind (resources,
    /// findings) for the store's current generation ([`CountCache`]; 0: count every
    /// listing). Stores start with [`COUNT_CACHE_ENTRIES`]; one without a cache ignores it.
    fn cache_counts(&self, entries: usize) {
        let _ = entries;
    }

    /// A handle on this store for one thread of the interface server, made on that thread:
    /// the same data, count caches and settings, with what the backend keeps per thread
    /// (MySQL: a connection pool of the thread's own, so that a connection given back
    /// after a request is recycled on that thread instead of waking another), sharing the
    /// node's bounds among the server's `workers` threads. None: use the store itself (see
    /// [`for_worker`]).
    fn worker_handle(&self, workers: usize) -> Option<SharedStore> {
        let _ = workers;
        None
    }

    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Add a user; false (and nothing changed) when the name is taken.
    async fn create_user(&self, user: &StoredUser) -> Result<bool, StoreError>;
    async fn get_user(&self, name: &str) -> Result<Option<StoredUser>, StoreError>;
    /// Every user, by name.
    async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError>;

    /// Add an API key; false (and nothing changed) when its id or hash is taken.
    async fn put_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError>;
    /// The unrevoked key whose secret hashes to `hash`, with its owner's role; none when
    /// there is no such key or its owner is gone.
    async fn find_api_key(
        &self,
        hash: &str,
    ) -> Result<Option<(StoredApiKey, crate::auth::Role)>, StoreError>;
    async fn get_api_key(&self, id: &str) -> Result<Option<StoredApiKey>, StoreError>;
    /// The keys of one user, or of everyone, revoked ones included, oldest first.
    async fn list_api_keys(&self, user: Option<&str>) -> Result<Vec<StoredApiKey>, StoreError>;
    /// Revoke a key at `at`; false when it does not exist or is already revoked.
    async fn revoke_api_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError>;
    /// Record a use of a key.
    async fn touch_api_key(&self, id: &str, at: Timestamp) -> Result<(), StoreError>;

    async fn put_session(&self, session: &StoredSession) -> Result<(), StoreError>;
    /// The session whose token hashes to `hash`, unexpired at `now`, with its user's role.
    async fn find_session(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<(StoredSession, crate::auth::Role)>, StoreError>;
    /// End a session; false when there was none.
    async fn delete_session(&self, hash: &str) -> Result<bool, StoreError>;
    /// Remove the sessions expired at `now`; returns how many.
    async fn purge_sessions(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Append an entry to the audit log (its fields cut by [`AuditEntry::bounded`]).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The audit log, newest first.
    async fn list_audit(&self, limit: u32, offset: u64) -> Result<Page<AuditEntry>, StoreError>;
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// The store for the calling thread of an interface server of `workers` threads: its
/// [`Store::worker_handle`], or the store itself.
pub fn for_worker(store: &SharedStore, workers: usize) -> SharedStore {
    store
        .worker_handle(workers)
        .unwrap_or_else(|| store.clone())
}

/// Open the store a `store.url` names, sealing and opening cloud credentials with
/// `cipher` (see [`CredentialsCipher::for_store`]). SQLite migrates on open; MySQL refuses
/// a schema other than this build's (see [`migrate`]). Either seals the plaintext
/// credentials of earlier versions, and refuses a key that opens none of the sealed ones.
pub async fn open_with(
    url: &str,
    cipher: Arc<CredentialsCipher>,
) -> Result<SharedStore, StoreError> {
    if url.starts_with("sqlite:") {
        sqlite::open(url, cipher).await
    } else if url.starts_with("mysql://") {
        mysql::open(url, cipher).await
    } else {
        Err(StoreError::UnsupportedUrl(mysql::redact_url(url)))
    }
}

/// [`open_with`] an ephemeral key: credentials written through this handle cannot be read
/// by any other. For tests, tools and in-memory stores; a node opens its store with its
/// configured key.
pub async fn open(url: &str) -> Result<SharedStore, StoreError> {
    open_with(url, Arc::new(CredentialsCipher::ephemeral())).await
}

/// Bring the schema of the store a `store.url` names up to this build's; returns the
/// schema version. Idempotent. For SQLite, which migrates whenever it opens, this opens
/// the store once (touching no credentials).
pub async fn migrate(url: &str) -> Result<i64, StoreError> {
    if url.starts_with("sqlite:") {
        drop(sqlite::open(url, Arc::new(CredentialsCipher::ephemeral())).await?);
        Ok(sqlite::SCHEMA_VERSION)
    } else if url.starts_with("mysql://") {
        mysql::migrate(url).await
    } else {
        Err(StoreError::UnsupportedUrl(mysql::redact_url(url)))
    }
}

#[cfg(test)]
mod raw_page_tests {
    use super::*;

    const KIND: (ResourceType, Provider) = (ResourceType::AwsEc2Volume, Provider::Aws);

    #[test]
    fn a_row_pushed_as_bytes_reads_back_column_by_column() {
        let mut page = RawPage::default();
        for (uid, name) in [("u1", "é-vol"), ("u2", "plain")] {
            let fields: [&[u8]; RawField::COUNT] = [
                uid.as_bytes(),
                b"cloud",
                b"123",
                b"eu-west-1",
                b"vol-1",
                name.as_bytes(),
                b"{}",
                br#"{"encrypted":true}"#,
            ];
            page.push_bytes(KIND.0, KIND.1, fields).expect("valid row");
        }
        let rows: Vec<RawResource<'_>> = page.iter().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].uid, rows[0].name), ("u1", "é-vol"));
        assert_eq!((rows[1].uid, rows[1].region), ("u2", "eu-west-1"));
        assert_eq!(rows[1].properties, r#"{"encrypted":true}"#);
    }

    #[test]
    fn bytes_that_are_not_whole_utf8_columns_are_refused_and_leave_the_page_as_it_was() {
        let mut page = RawPage::default();
        let good: [&[u8]; RawField::COUNT] = [b"u0", b"c", b"a", b"r", b"i", b"n", b"{}", b"{}"];
        page.push_bytes(KIND.0, KIND.1, good).expect("valid row");
        let e = "é".as_bytes();
        // valid UTF-8 as a whole, but a character split between two columns
        let split: [&[u8]; RawField::COUNT] =
            [b"u1", b"c", b"a", b"r", b"i", &e[..1], &e[1..], b"{}"];
        // not UTF-8 at all
        let invalid: [&[u8]; RawField::COUNT] =
            [b"u2", b"c", b"a", b"r", b"i", b"\xff", b"{}", b"{}"];
        for fields in [split, invalid] {
            let err = page
                .push_bytes(KIND.0, KIND.1, fields)
                .expect_err("refused");
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        }
        let uids: Vec<&str> = page.iter().map(|r| r.uid).collect();
        assert_eq!(uids, ["u0"]);
    }
}

#[cfg(test)]
mod ms_time_tests {
    use super::ms_time;
    use chrono::TimeZone;
    use palisade_proto::Timestamp;

    /// What chrono's serde writes for `t`, quotes and all.
    fn chrono_json(t: &Timestamp) -> String {
        serde_json::to_string(t).expect("chrono json")
    }

    fn ours_json(t: &Timestamp) -> String {
        let mut out = Vec::new();
        ms_time::serialize(t, &mut serde_json::Serializer::new(&mut out)).expect("ours");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn stored_times_serialise_exactly_as_chrono_writes_them() {
        let mut times: Vec<Timestamp> = [
            0,
            1,
            999,
            1_000,
            1_764_549_264_905,
            1_764_549_264_000,
            -1,
            -62_135_596_800_000, // 0001-01-01
            253_402_300_799_999, // 9999-12-31T23:59:59.999
        ]
        .iter()
        .map(|ms| Timestamp::from_timestamp_millis(*ms).expect("in range"))
        .collect();
        // a spread of ordinary times, every field varying
        times.extend((0..2000i64).map(|n| {
            Timestamp::from_timestamp_millis(n * 7_919_993_177 + n % 1000).expect("in range")
        }));
        for t in &times {
            let mut buf = [0u8; 24];
            assert!(
                ms_time::write(t, &mut buf).is_some(),
                "{t:?} takes the fast path"
            );
            assert_eq!(ours_json(t), chrono_json(t), "{t:?}");
        }
    }

    #[test]
    fn other_times_fall_back_to_chrono() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
            .expect("leap second")
            .and_utc();
        let micros = Timestamp::from_timestamp_micros(1_764_549_264_905_123).expect("micros");
        let far = chrono::Utc
            .with_ymd_and_hms(12_345, 1, 2, 3, 4, 5)
            .single()
            .expect("year 12345");
        let before = chrono::Utc
            .with_ymd_and_hms(-1, 1, 2, 3, 4, 5)
            .single()
            .expect("year -1");
        for t in [leap, micros, far, before] {
            let mut buf = [0u8; 24];
            assert!(ms_time::write(&t, &mut buf).is_none(), "{t:?}");
            assert_eq!(ours_json(&t), chrono_json(&t), "{t:?}");
        }
        let none: Option<Timestamp> = None;
        let mut out = Vec::new();
        ms_time::serialize_opt(&none, &mut serde_json::Serializer::new(&mut out)).expect("none");
        assert_eq!(out, b"null");
    }
}

#[cfg(test)]
mod listed_json_tests {
    use super::*;

    /// A row of [`ListedColumns::columns`] as text (`None` is NULL).
    struct TextRow(Vec<Option<String>>);

    impl StoredRow for TextRow {
        fn text(&self, idx: usize) -> Result<&str, StoreError> {
            match self.0.get(idx) {
                Some(Some(text)) => Ok(text),
                _ => Err(StoreError::Corrupt(format!("column {idx} is not text"))),
            }
        }

        fn int(&self, idx: usize) -> Result<i64, StoreError> {
            self.text(idx)?
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("column {idx} is not an integer")))
        }

        fn opt_int(&self, idx: usize) -> Result<Option<i64>, StoreError> {
            match self.0.get(idx) {
                Some(None) => Ok(None),
                _ => self.int(idx).map(Some),
            }
        }
    }

    /// The row `listed` reads of a resource, its tags and properties as `tags`/`properties`.
    fn row_of(r: &Resource, listed: &ListedColumns, tags: &str, properties: &str) -> TextRow {
        let mut columns: Vec<Option<String>> = vec![
            Some(r.uid.as_str().to_owned()),
            Some(r.cloud.as_str().to_owned()),
            Some(r.account.clone()),
            Some(r.id.clone()),
            Some(r.name.clone()),
            Some(r.first_seen.timestamp_millis().to_string()),
            Some(r.last_seen.timestamp_millis().to_string()),
            r.deleted_at.map(|t| t.timestamp_millis().to_string()),
            Some(tags.to_owned()),
            Some(properties.to_owned()),
        ];
        if listed.region.is_none() {
            columns.push(Some(r.region.clone()));
        }
        if listed.rtype.is_none() {
            columns.push(Some(r.rtype.as_str().to_owned()));
        }
        TextRow(columns)
    }

    fn written(
        row: &TextRow,
        listed: &ListedColumns,
        guaranteed: bool,
    ) -> Result<String, StoreError> {
        let mut out = Vec::new();
        write_listed_json(row, listed, guaranteed, &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    fn resources() -> Vec<Resource> {
        let cloud = CloudId("c-\"json\"".into());
        let mut plain = Resource::harvested(
            &cloud,
            "123456789012",
            "us-east-1",
            ResourceType::AwsEc2Instance,
            "i-1",
            "name",
            BTreeMap::new(),
            serde_json::json!({"size": 1}),
            chrono::DateTime::from_timestamp_millis(1_764_547_200_000).expect("time"),
        );
        let mut odd = plain.clone();
        odd.uid = ResourceUid("u-odd".into());
        odd.name = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} é 😀 </".into();
        odd.id = "arn:aws:s3:::b/ü".into();
        odd.account = "acct\u{1f}".into();
        odd.tags = BTreeMap::from([("k\"ey".to_owned(), "v\\al\n".to_owned())]);
        odd.properties =
            serde_json::json!({"s": "x\ty\"z", "n": [1.5, -2, null, true], "o": {}, "u": "😀"});
        odd.first_seen = chrono::DateTime::from_timestamp_millis(1_764_547_200_123).expect("ms");
        odd.last_seen = chrono::DateTime::from_timestamp_millis(-62_135_596_800_000 - 1)
            .expect("before year 1");
        odd.deleted_at =
            Some(chrono::DateTime::from_timestamp_millis(253_402_300_800_000).expect("year 10000"));
        plain.deleted_at = Some(plain.last_seen);
        vec![plain, odd]
    }

    #[test]
    fn a_listed_row_is_written_as_its_stored_resource_serialises() {
        for r in resources() {
            let stored = StoredResource::encode(&r).expect("encode");
            let expected = serde_json::to_string(&stored).expect("serde");
            for listed in [
                ListedColumns::default(),
                ListedColumns {
                    rtype: Some(r.rtype),
                    region: None,
                },
                ListedColumns {
                    rtype: None,
                    region: Some(r.region.clone()),
                },
                ListedColumns::of(&ResourceQuery {
                    rtype: Some(r.rtype),
                    region: Some(r.region.clone()),
                    ..ResourceQuery::default()
                }),
            ] {
                let row = row_of(&r, &listed, stored.tags.get(), stored.properties.get());
                for guaranteed in [false, true] {
                    assert_eq!(
                        written(&row, &listed, guaranteed).expect("written"),
                        expected,
                        "{} {listed:?} guaranteed {guaranteed}",
                        r.uid
                    );
                }
                // JSON stored with whitespace around it is written as RawValue holds it
                let spaced = row_of(&r, &listed, " {} \n", "\t{\"a\": 1} ");
                for guaranteed in [false, true] {
                    let text = written(&spaced, &listed, guaranteed).expect("spaced");
                    assert!(
                        text.contains(r#""tags":{},"properties":{"a": 1},"#),
                        "{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn text_that_is_not_json_is_refused_unless_guaranteed() {
        let r = &resources()[0];
        let listed = ListedColumns::default();
        for (tags, properties, what) in [
            ("{}", r#"{"cut": "#, "properties"),
            ("{} {}", "{}", "tags"),
            ("", "{}", "tags"),
        ] {
            let row = row_of(r, &listed, tags, properties);
            match written(&row, &listed, false) {
                Err(StoreError::Corrupt(m)) => {
                    assert!(m.contains(r.uid.as_str()) && m.contains(what), "{m}");
                }
                other => panic!("{tags:?} {properties:?}: {other:?}"),
            }
        }
        // a row with a type this build does not know, or a bad time, is refused either way
        let mut row = row_of(r, &listed, "{}", "{}");
        row.0[11] = Some("aws.no.such".into());
        assert!(matches!(
            written(&row, &listed, true),
            Err(StoreError::Corrupt(_))
        ));
        let mut row = row_of(r, &listed, "{}", "{}");
        row.0[5] = Some(i64::MAX.to_string());
        assert!(matches!(
            written(&row, &listed, true),
            Err(StoreError::Corrupt(_))
        ));
    }
}
