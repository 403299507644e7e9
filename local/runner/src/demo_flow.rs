//! The flow the SMS demo and the voice demo share: start a stack, tell the simulator each
//! scenario's outcome, `POST` it, read the id from the answer, wait (within a bound) until every
//! record is final by `GET`ting it, and turn each final view into a row. What differs between
//! the two is stated once per channel, in [`Channel`].

use serde::Serialize;
use serde_json::json;

use crate::stack::{LocalStack, StackOptions};

/// What running a demo can fail with.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One scripted record: what every channel's scenario states, and the channel's own `script`.
pub struct Scenario<S> {
    /// What it shows.
    pub label: &'static str,
    /// Recipient.
    pub to: &'static str,
    /// The request body for `POST /v1/messages` or `POST /v1/calls` (without `to`).
    pub request: serde_json::Value,
    /// The final status it must reach.
    pub expect_status: &'static str,
    /// How many attempts it must take.
    pub expect_attempts: u32,
    /// What the channel scripts beside.
    pub script: S,
}

/// What differs between the messages and the calls of the demo.
pub(crate) trait Channel {
    /// The channel's own part of a scenario.
    type Script;
    /// The channel's own part of a row.
    type Detail: Cells;
    /// The record's status, as its view spells it.
    type Status: herald::domain::RecordStatus + std::str::FromStr;
    /// The record: `message` or `call` (its collection is `/v1/{NOUN}s`, the field naming its
    /// id when the answer has no `id` is `{NOUN}_id`).
    const NOUN: &'static str;
    /// The stack's seed.
    const SEED: u64;
    /// Tells the simulator what to do with the scenario, before it is sent.
    fn prepare(sim: &twilio_sim::SimHandle, s: &Scenario<Self::Script>);
    /// Once the send is answered: undoes what `prepare` set for the send alone.
    fn sent(_sim: &twilio_sim::SimHandle) {}
    /// The channel's part of the row of `s`, from its final view and what every channel reads
    /// of it, and whether that part is what the simulator was told.
    fn detail(
        s: &Scenario<Self::Script>,
        view: &serde_json::Value,
        ended: &Ended,
    ) -> (Self::Detail, bool);
}

/// A channel's own part of a row, as the table for people shows it.
pub(crate) trait Cells {
    /// Its columns, between `STATUS` and `OK`.
    const COLUMNS: &'static [Column<'static>];
    /// Its cells, one a column.
    fn cells(&self) -> Vec<String>;
}

/// One row of the result: what every channel shows, and the channel's own `detail`.
#[derive(Debug, Serialize)]
pub struct Row<D> {
    /// Herald's id of the record.
    pub id: String,
    /// Masked recipient.
    pub to: String,
    /// Final status.
    pub status: String,
    /// What the channel shows beside.
    #[serde(flatten)]
    pub detail: D,
    /// What it shows.
    #[serde(skip)]
    pub label: &'static str,
    /// Whether it ended as the simulator was told.
    #[serde(skip)]
    pub as_expected: bool,
}

/// What every row reads of a final view: its status and attempts, and whether both are what
/// the scenario expects.
pub(crate) struct Ended {
    /// The final status.
    pub status: String,
    /// Attempts it took.
    pub attempts: u32,
    /// Whether the status and the attempts are as expected.
    pub as_expected: bool,
}

/// What the final `view` of the record of `s` shows of every channel.
fn ended<S>(s: &Scenario<S>, view: &serde_json::Value) -> Ended {
    let status = str_field(view, "status");
    let attempts = u32_field(view, "attempts").unwrap_or(0);
    Ended {
        as_expected: status == s.expect_status && attempts == s.expect_attempts,
        status,
        attempts,
    }
}

/// The row of a scenario of channel `C`, from its final view (compared with what the simulator
/// was told).
fn row<C: Channel>(s: Scenario<C::Script>, id: String, view: &serde_json::Value) -> Row<C::Detail> {
    let ended = ended(&s, view);
    let (detail, as_expected) = C::detail(&s, view, &ended);
    Row {
        id,
        to: str_field(view, "to"),
        status: ended.status,
        detail,
        label: s.label,
        as_expected: ended.as_expected && as_expected,
    }
}

/// Whether a view of a record of channel `C` shows a final status.
fn is_final<C: Channel>(view: &serde_json::Value) -> bool {
    use herald::domain::RecordStatus;
    view["status"]
        .as_str()
        .and_then(|s| s.parse::<C::Status>().ok())
        .is_some_and(RecordStatus::is_terminal)
}

/// A number field of a view, when it fits a `u32`.
pub(crate) fn u32_field(view: &serde_json::Value, key: &str) -> Option<u32> {
    view[key].as_u64().and_then(|c| u32::try_from(c).ok())
}

/// A text field of a view (empty when missing).
pub(crate) fn str_field(view: &serde_json::Value, key: &str) -> String {
    view[key].as_str().unwrap_or("").to_owned()
}

/// Where a column's cells stand in its width.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Align {
    /// Padded on the right.
    Left,
    /// Padded on the left.
    Right,
}

/// A column of a table for people: its title, and the width its cells are padded to (0 for
/// the last one, which is not padded).
#[derive(Debug)]
pub(crate) struct Column<'a> {
    /// What its first line shows.
    title: &'a str,
    /// The width its cells are padded to.
    width: usize,
    /// Where its cells stand.
    align: Align,
}

impl<'a> Column<'a> {
    /// A column of `width` whose cells are padded on the right.
    pub(crate) const fn left(title: &'a str, width: usize) -> Self {
        Self {
            title,
            width,
            align: Align::Left,
        }
    }

    /// A column of `width` whose cells are padded on the left.
    pub(crate) const fn right(title: &'a str, width: usize) -> Self {
        Self {
            title,
            width,
            align: Align::Right,
        }
    }
}

/// The rows of channel `C` as a table for people: a line of titles, then a line a row. The
/// record's id, `TO` and `STATUS` come first, the channel's own columns next, then `OK` and
/// `SCENARIO`.
pub(crate) fn table<C: Channel>(rows: &[Row<C::Detail>]) -> String {
    let noun = C::NOUN.to_uppercase();
    let head = [
        Column::left(&noun, 32),
        Column::left("TO", 14),
        Column::left("STATUS", 12),
    ];
    let tail = [Column::left("OK", 3), Column::left("SCENARIO", 0)];
    let columns: Vec<&Column<'_>> = head.iter().chain(C::Detail::COLUMNS).chain(&tail).collect();
    let titles = columns.iter().map(|c| c.title.to_owned()).collect();
    let lines = rows.iter().map(|r| {
        let mut cells = vec![r.id.clone(), r.to.clone(), r.status.clone()];
        cells.extend(r.detail.cells());
        cells.extend([
            if r.as_expected { "yes" } else { "NO" }.into(),
            r.label.into(),
        ]);
        cells
    });
    std::iter::once(titles)
        .chain(lines)
        .map(|cells| line(&columns, &cells))
        .collect()
}

/// One line of a table: each cell padded to its column, a space between two.
fn line(columns: &[&Column<'_>], cells: &[String]) -> String {
    let padded: Vec<String> = columns
        .iter()
        .zip(cells)
        .map(|(c, cell)| match c.align {
            Align::Left => format!("{cell:<width$}", width = c.width),
            Align::Right => format!("{cell:>width$}", width = c.width),
        })
        .collect();
    padded.join(" ") + "\n"
}

/// Runs `scenarios` of channel `C` on a stack in `data_dir`; returns the rows.
pub(crate) async fn run<C: Channel>(
    data_dir: &std::path::Path,
    scenarios: Vec<Scenario<C::Script>>,
) -> Result<Vec<Row<C::Detail>>, Error> {
    let path = format!("/v1/{}s", C::NOUN);
    let id_field = format!("{}_id", C::NOUN);
    let stack = LocalStack::start(&StackOptions {
        seed: C::SEED,
        ..StackOptions::new(data_dir)
    })
    .await?;
    let http = reqwest::Client::new();
    let mut sent = Vec::new();
    for s in scenarios {
        C::prepare(&stack.sim, &s);
        let mut body = s.request.clone();
        body["to"] = json!(s.to);
        let resp = http
            .post(format!("{}{path}", stack.api_url))
            .bearer_auth(&stack.api_key)
            .json(&body)
            .send()
            .await?;
        C::sent(&stack.sim);
        let status = resp.status().as_u16();
        let answer: serde_json::Value = resp.json().await?;
        let id = answer
            .get("id")
            .or_else(|| answer.get(&id_field))
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("{}: no {} id in the {status} answer", s.label, C::NOUN))?
            .to_owned();
        sent.push((s, id));
    }

    // Retries take real seconds (backoff); wait until every record is final, within a bound.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let views = loop {
        stack.sim.wait_idle().await;
        let mut views = Vec::new();
        for (_, id) in &sent {
            let v: serde_json::Value = http
                .get(format!("{}{path}/{id}", stack.api_url))
                .bearer_auth(&stack.api_key)
                .send()
                .await?
                .json()
                .await?;
            views.push(v);
        }
        if views.iter().all(is_final::<C>) || tokio::time::Instant::now() >= deadline {
            break views;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    let rows = sent
        .into_iter()
        .zip(views)
        .map(|((s, id), v)| row::<C>(s, id, &v))
        .collect();
    stack.shutdown().await;
    Ok(rows)
}
