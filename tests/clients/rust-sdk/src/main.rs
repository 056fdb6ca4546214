//! What Element X does, with the libraries it is built on (matrix-sdk and matrix-sdk-ui 0.18),
//! against a Trellis server over Simplified Sliding Sync:
//!
//! 1. two users log in with their passwords and start the SDK's `SyncService` (a room-list
//!    connection and an encryption connection, discovered from `/versions`);
//! 2. the `RoomListService` shows alice's rooms most recent first, and follows a new message;
//! 3. a `Timeline` shows a room's latest messages and paginates back to its start;
//! 4. bob sees an invite, joins from it, and receives the message alice sends through her
//!    timeline;
//! 5. in an encrypted room the two exchange messages each side decrypts (to-device and e2ee
//!    extensions at work).
//!
//! Usage: `trellis-rust-sdk-scenario <homeserver URL> <alice> <bob> <password>` (both users
//! registered beforehand). Prints `rust-sdk scenario passed` and exits 0 on success.
//! `trellis-rust-sdk-scenario oauth <homeserver URL> <user> <password>` runs the OAuth 2.0
//! sign-in instead (`oauth.rs`).

#![recursion_limit = "256"]

mod oauth;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use eyeball_im::{Vector, VectorDiff};
use futures_util::StreamExt;
use matrix_sdk::{
    Client, Room, RoomState,
    ruma::{
        OwnedRoomId, RoomId, api::client::room::create_room::v3::Request as CreateRoom,
        events::room::message::RoomMessageEventContent,
    },
    sliding_sync::VersionBuilder,
};
use matrix_sdk_ui::{
    Timeline,
    room_list_service::{RoomListItem, filters::new_filter_non_left},
    sync_service::SyncService,
    timeline::RoomExt,
};

/// How long any one expectation may take to come true.
const PATIENCE: Duration = Duration::from_secs(40);

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,matrix_sdk_crypto=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, url, user, password] = args.as_slice()
        && mode == "oauth"
    {
        return oauth::run(url, user, password).await;
    }
    let [_, url, alice_name, bob_name, password] = args.as_slice() else {
        bail!("usage: trellis-rust-sdk-scenario <homeserver URL> <alice> <bob> <password>");
    };
    let alice = login(url, alice_name, password).await.context("alice logs in")?;
    // A room with history from before this session, as a user finds when they open the app.
    let history = create(&alice, "history").await?;
    for i in 0..30 {
        history.send(RoomMessageEventContent::text_plain(format!("history {i}"))).await?;
    }
    let alice_sync = start(&alice).await?;
    let bob = login(url, bob_name, password).await.context("bob logs in")?;
    let bob_sync = start(&bob).await?;
    step("logged in; sync services running (sliding sync discovered from /versions)");

    // 2. The room list, most recent first.
    let mut rooms = Vec::new();
    for name in ["one", "two", "three"] {
        let room = create(&alice, name).await?;
        room.send(RoomMessageEventContent::text_plain(format!("first in {name}"))).await?;
        rooms.push(room);
    }
    rooms[0].send(RoomMessageEventContent::text_plain("one again")).await?;
    let expected: Vec<OwnedRoomId> = [0, 2, 1].iter().map(|i| rooms[*i].room_id().to_owned()).collect();
    let list = alice_sync.room_list_service().all_rooms().await?;
    let (entries, controller) = list.entries_with_dynamic_adapters(50);
    controller.set_filter(Box::new(new_filter_non_left()));
    let mut entries = Box::pin(entries);
    let mut shown: Vector<RoomListItem> = Vector::new();
    until("the room list shows one, three, two", async {
        loop {
            let ids: Vec<OwnedRoomId> = shown.iter().map(|r| r.room_id().to_owned()).collect();
            if ids.len() >= 3 && ids[..3] == expected[..] {
                return Ok(());
            }
            let diffs = entries.next().await.context("room list stream ended")?;
            for diff in diffs {
                diff.apply(&mut shown);
            }
        }
    })
    .await?;
    step("RoomListService lists the rooms in recency order");
    rooms[1].send(RoomMessageEventContent::text_plain("two is back")).await?;
    let top = rooms[1].room_id().to_owned();
    until("a new message moves its room to the top", async {
        loop {
            if shown.front().is_some_and(|r| r.room_id() == top) {
                return Ok(());
            }
            for diff in entries.next().await.context("room list stream ended")? {
                diff.apply(&mut shown);
            }
        }
    })
    .await?;
    step("a new message moves its room to the top of the list");

    // 3. A timeline and back-pagination.
    // Another session of alice's opens the history room straight away (its subscription is in
    // the connection's first request), as Element X reopens the room a user was in.
    let phone = login(url, alice_name, password).await.context("alice logs in again")?;
    let phone_sync = Arc::new(SyncService::builder(phone.clone()).build().await?);
    phone_sync.room_list_service().subscribe_to_rooms(&[history.room_id()]).await;
    phone_sync.start().await;
    let history = until("the new session knows the room", room_in_state(&phone, history.room_id(), RoomState::Joined))
        .await?;
    let (cache, _cache_handles) = history.event_cache().await?;
    until("the subscription brings the room's latest messages", async {
        loop {
            if cache.events().await?.iter().any(|e| e.raw().json().get().contains("\"history 29\"")) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await?;
    let timeline = history.timeline().await?;
    // The subscription's wider timeline first, as a user sees the room open before scrolling.
    until(
        "the timeline shows the latest twenty messages",
        wait_for(&timeline, |b| b.contains(&"history 10".to_owned()) && b.contains(&"history 29".to_owned())),
    )
    .await?;
    until("back-pagination reaches the room's first message", async {
        loop {
            if messages(&timeline).await.contains(&"history 0".to_owned()) {
                return Ok(());
            }
            if timeline.paginate_backwards(20).await? {
                // The start of the room: everything must be there now.
                let all = messages(&timeline).await;
                ensure!(all.contains(&"history 0".to_owned()), "start reached without the first message: {all:?}");
                return Ok(());
            }
        }
    })
    .await?;
    let all = messages(&timeline).await;
    let expected: Vec<String> = (0..30).map(|i| format!("history {i}")).collect();
    ensure!(all == expected, "the timeline holds every message once, in order: {all:?}");
    step("a Timeline shows the room and paginates back to its first message");

    // 4. Invite, join from the invite, send and receive.
    let shared = &rooms[0];
    shared.invite_user_by_id(bob.user_id().context("bob's user ID")?).await?;
    let invited = until("bob sees the invite", room_in_state(&bob, shared.room_id(), RoomState::Invited)).await?;
    invited.join().await?;
    until("bob's room is joined", room_in_state(&bob, shared.room_id(), RoomState::Joined)).await?;
    step("bob sees the invite and joins from it");
    let alice_timeline = shared.timeline().await?;
    alice_timeline.send(RoomMessageEventContent::text_plain("hello bob").into()).await?;
    bob_sync.room_list_service().subscribe_to_rooms(&[shared.room_id()]).await;
    let bob_room = bob.get_room(shared.room_id()).context("bob's room")?;
    let bob_timeline = bob_room.timeline().await?;
    until("bob receives alice's message", wait_for(&bob_timeline, |b| b.contains(&"hello bob".to_owned()))).await?;
    step("a message sent through alice's timeline reaches bob's");

    // 5. End-to-end encryption.
    let secret = create(&alice, "secret").await?;
    secret.enable_encryption().await?;
    secret.invite_user_by_id(bob.user_id().context("bob's user ID")?).await?;
    let invited = until("bob sees the encrypted room's invite", room_in_state(&bob, secret.room_id(), RoomState::Invited))
        .await?;
    invited.join().await?;
    let bob_secret = until("bob joins the encrypted room", room_in_state(&bob, secret.room_id(), RoomState::Joined)).await?;
    until("alice sees bob joined", async {
        loop {
            secret.sync_members().await?;
            if secret.joined_user_ids().await?.iter().any(|u| Some(u.as_ref()) == bob.user_id()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await?;
    ensure!(secret.latest_encryption_state().await?.is_encrypted(), "the room is encrypted");
    alice_sync.room_list_service().subscribe_to_rooms(&[secret.room_id()]).await;
    bob_sync.room_list_service().subscribe_to_rooms(&[secret.room_id()]).await;
    let alice_secret_timeline = secret.timeline().await?;
    let bob_secret_timeline = bob_secret.timeline().await?;
    alice_secret_timeline.send(RoomMessageEventContent::text_plain("for your eyes only").into()).await?;
    until(
        "bob decrypts alice's message",
        wait_for(&bob_secret_timeline, |b| b.contains(&"for your eyes only".to_owned())),
    )
    .await?;
    bob_secret_timeline.send(RoomMessageEventContent::text_plain("and yours").into()).await?;
    until("alice decrypts bob's answer", wait_for(&alice_secret_timeline, |b| b.contains(&"and yours".to_owned())))
        .await?;
    step("alice and bob exchange end-to-end-encrypted messages");

    phone_sync.stop().await;
    alice_sync.stop().await;
    bob_sync.stop().await;
    println!("rust-sdk scenario passed");
    Ok(())
}

fn step(what: &str) {
    println!("ok: {what}");
}

/// A client logged in with a password, as Element X sets it up.
async fn login(url: &str, user: &str, password: &str) -> Result<Client> {
    let client = Client::builder()
        .homeserver_url(url)
        .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
        .build()
        .await?;
    client.matrix_auth().login_username(user, password).initial_device_display_name("rust-sdk scenario").send().await?;
    Ok(client)
}

/// The client's sync service (room list and encryption connections), started.
async fn start(client: &Client) -> Result<Arc<SyncService>> {
    let sync = Arc::new(SyncService::builder(client.clone()).build().await?);
    sync.start().await;
    Ok(sync)
}

async fn create(client: &Client, name: &str) -> Result<Room> {
    let mut request = CreateRoom::new();
    request.name = Some(name.to_owned());
    Ok(client.create_room(request).await?)
}

/// The message bodies of a timeline, oldest first.
async fn messages(timeline: &Timeline) -> Vec<String> {
    timeline
        .items()
        .await
        .iter()
        .filter_map(|item| item.as_event()?.content().as_message().map(|m| m.body().to_owned()))
        .collect()
}

/// Waits until the timeline's message bodies satisfy `done`.
async fn wait_for(timeline: &Timeline, done: impl Fn(&[String]) -> bool) -> Result<()> {
    let (_, mut updates) = timeline.subscribe().await;
    loop {
        if done(&messages(timeline).await) {
            return Ok(());
        }
        // Any change of the timeline is a reason to look again.
        let _: Option<Vec<VectorDiff<_>>> = updates.next().await;
    }
}

/// The user's room once it is in `state`.
async fn room_in_state(client: &Client, room: &RoomId, state: RoomState) -> Result<Room> {
    loop {
        if let Some(r) = client.get_room(room)
            && r.state() == state
        {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until<T>(what: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(PATIENCE, work).await {
        Ok(result) => result.with_context(|| what.to_owned()),
        Err(_) => bail!("timed out: {what}"),
    }
}
