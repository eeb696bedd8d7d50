"""Issue 13, item 7: subtitle, data (timecode) and attachment streams are copied where the
output container can hold them; what it cannot hold is named in one warning before the job
runs. (All audio streams are kept: tests/test_roundtrip.py.)"""

from __future__ import annotations

import av

from ffray.video.probe import probe
from ffray.video.streams import dropped_note, split_streams
from tests import awkward as A
from tests.media import swap


def _kinds(path) -> list[str]:
    with av.open(str(path)) as c:
        return [s.type for s in c.streams]


def test_probe_lists_subtitle_and_attachment_streams(tmp_path, media):
    src = A.with_subtitles(media.cfr_silent, tmp_path / "s.mkv", tmp_path, attachment=True)
    info, _ = probe(src)
    assert [(o.kind, o.codec, o.language) for o in info.others] == [
        ("subtitle", "srt", "eng"), ("attachment", "font.ttf", None)]
    assert info.to_json()["others"][0]["kind"] == "subtitle"


def test_matroska_keeps_subtitles_and_attachments_exactly(cluster, tmp_path, media, data_dir):
    src = A.with_subtitles(media.cfr_silent, tmp_path / "s.mkv", tmp_path, attachment=True)
    ledger, res = swap(src, tmp_path / "o.mkv", data_dir, actors=1, gpu_per_actor=1)
    assert not ledger.spec["notes"]  # nothing dropped, nothing to say
    assert _kinds(tmp_path / "o.mkv") == ["video", "subtitle", "attachment"]
    assert A.subtitle_packets(tmp_path / "o.mkv") == A.subtitle_packets(src)  # text and timing
    assert res.summary["subtitle_packets"] == 2
    with av.open(str(tmp_path / "o.mkv")) as c:
        att = c.streams[2]
        assert (att.name, att.mimetype, bytes(att.data)) == ("font.ttf", "font/ttf",
                                                             b"\x00\x01\x00\x00fake-font")


def test_mp4_names_what_it_drops_before_the_job(cluster, tmp_path, media, data_dir):
    src = A.with_subtitles(media.cfr_silent, tmp_path / "s.mkv", tmp_path)
    with av.open(str(src)) as c:
        keep, drop = split_streams(c, "mp4")
    assert keep == [] and [d.describe() for d in drop] == ["subtitle stream #1 (srt, eng)"]
    ledger, _ = swap(src, tmp_path / "o.mp4", data_dir, actors=1, gpu_per_actor=1)
    (note,) = ledger.spec["notes"]
    assert note == dropped_note(drop, ".mp4") and note.startswith("warning: .mp4 files cannot hold")
    assert _kinds(tmp_path / "o.mp4") == ["video"]


def test_timecode_track_is_kept_in_mp4_and_matroska(cluster, tmp_path, data_dir):
    src = A.with_timecode(tmp_path / "tc.mov")
    assert "data" in _kinds(src)
    for ext in (".mp4", ".mkv"):  # .mov: the same muxer as .mp4
        out = tmp_path / f"o{ext}"
        ledger, _ = swap(src, out, data_dir, actors=1, gpu_per_actor=1)
        assert not ledger.spec["notes"]
        with av.open(str(out)) as c:
            tc = {k.lower(): v for k, v in c.streams.video[0].metadata.items()}.get("timecode")
            assert tc == "01:00:00:00"
            assert ("data" in [s.type for s in c.streams]) == (ext != ".mkv")  # a new tmcd track
