import pytest
import torch

from randla.nn.text import fidelity, load_encoder, read_sentences


def test_fidelity_of_identical_embeddings_is_perfect():
    embeddings = torch.randn(12, 8, generator=torch.Generator().manual_seed(0))
    assert fidelity(embeddings, embeddings.clone()) == pytest.approx({"cosine": 1.0, "neighbours": 1.0, "k": 10})
    pair = fidelity(embeddings[:2], embeddings[:2].clone())
    assert pair["neighbours"] == 1.0 and pair["k"] == 1  # k is cut to the one other sentence


def test_fidelity_needs_two_sentences():
    with pytest.raises(ValueError, match="at least 2 sentences"):
        fidelity(torch.ones(1, 8), torch.ones(1, 8))


def test_read_sentences_counts_non_empty_lines(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("\n  only one sentence  \n\n")
    assert read_sentences(path) == ["only one sentence"]
    with pytest.raises(ValueError, match="1 non-empty line"):
        read_sentences(path, minimum=2)
    (tmp_path / "none.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="0 non-empty line"):
        read_sentences(tmp_path / "none.txt")


def test_read_sentences_names_the_file_and_line_of_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt.*line 2.*UTF-8"):
        read_sentences(path)


def test_read_sentences_drops_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufefffirst\nsecond\n".encode("utf-8"))
    assert read_sentences(path) == ["first", "second"]


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_fidelity_needs_a_positive_int_k(k):
    embeddings = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="`k` must be an int >= 1"):
        fidelity(embeddings, embeddings, k=k)


def test_load_encoder_names_a_folder_that_is_not_a_hugging_face_model(tmp_path):
    # transformers itself blamed a missing tokenizer library (sentencepiece) here.
    (tmp_path / "notes.txt").write_text("not a model\n")
    with pytest.raises(FileNotFoundError, match="has no config.json, so it is not a Hugging Face model directory"):
        load_encoder(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_encoder(tmp_path / "notes.txt")
