-- Application services' own room lists (`PUT /directory/list/appservice/{networkId}/{roomId}`),
-- shown by /publicRooms for `third_party_instance_id` `{appservice_id}|{network_id}` and with
-- `include_all_networks`. Written by the rooms service.
CREATE TABLE appservice_room_lists (
    appservice_id TEXT NOT NULL,
    network_id    TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    PRIMARY KEY (appservice_id, network_id, room_id)
);
CREATE INDEX appservice_room_lists_room ON appservice_room_lists (room_id);
