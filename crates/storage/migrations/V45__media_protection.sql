-- Written by the media service. Media an admin protected (Synapse's `safe_from_quarantine`,
-- for sticker packs and other shared media) is left alone by every quarantine until it is
-- unprotected; releasing from quarantine is not affected.
ALTER TABLE media ADD COLUMN safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE;
