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
    # A sentence-transformers module folder has a config.json too, with no model_type.
    pooling = tmp_path / "1_Pooling"
    pooling.mkdir()
    (pooling / "config.json").write_text('{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true}')
    with pytest.raises(ValueError, match="names no model_type.*sentence-transformers module folder.*the top one"):
        load_encoder(pooling)


def _auto(folder):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_a_tokenizer_without_padding_token_pads_with_its_end_token_on_a_copy(tiny_model_dir, sentences):
    from randla.nn.text import embed, token_batches

    model, tokenizer = _auto(tiny_model_dir("gpt2"))
    assert tokenizer.pad_token is None  # as GPT-2's
    texts = sentences["evaluation"][:6]
    (batch,) = token_batches(tokenizer, texts, max_length=64)
    assert tokenizer.pad_token is None  # the caller's tokenizer is not changed
    lengths = batch["attention_mask"].sum(dim=1)
    assert lengths.min() < lengths.max()  # padded
    padding = batch["input_ids"][batch["attention_mask"] == 0]
    assert padding.numel() > 0 and bool((padding == tokenizer.eos_token_id).all())
    # The attention mask hides the padding: each sentence embeds as it does alone, unpadded.
    alone = torch.cat([embed(model, [tokenizer([text], truncation=True, max_length=64, return_tensors="pt")])
                       for text in texts])
    torch.testing.assert_close(embed(model, [batch]), alone, rtol=0, atol=1e-5)


def test_load_encoder_gives_a_tokenizer_that_pads(tiny_model_dir):
    from randla.nn.text import token_batches

    model, tokenizer = load_encoder(tiny_model_dir("llama"))
    assert tokenizer.pad_token == tokenizer.eos_token
    (batch,) = token_batches(tokenizer, ["one", "two words here and more"])
    assert batch["input_ids"].shape[0] == 2


def test_a_tokenizer_with_no_token_to_pad_with_is_a_clear_error(tiny_model_dir):
    from randla.nn.text import token_batches

    _, tokenizer = _auto(tiny_model_dir("gpt2"))
    tokenizer.eos_token = None
    with pytest.raises(ValueError, match="neither a padding token nor an end-of-sequence token"):
        token_batches(tokenizer, ["one", "two words"])


def test_token_limit_is_the_models_positions():
    from types import SimpleNamespace

    from randla.nn.text import token_limit

    assert token_limit(SimpleNamespace(config=SimpleNamespace(max_position_embeddings=64))) == 64
    assert token_limit(SimpleNamespace(config=SimpleNamespace(max_position_embeddings=512))) == 128
    assert token_limit(torch.nn.Linear(2, 2)) == 128


def test_the_decoder_of_an_encoder_decoder_reads_the_sentence_shifted(tiny_model_dir):
    from randla.nn.calibration import call_model
    from randla.nn.text import check_embeds, token_batches, with_decoder_inputs

    model, tokenizer = _auto(tiny_model_dir("t5"))
    batches = token_batches(tokenizer, ["a first sentence", "and a second, longer sentence than that"])
    (batch,) = with_decoder_inputs(model, batches)
    ids, decoder = batch["input_ids"], batch["decoder_input_ids"]
    assert bool((decoder[:, 0] == model.config.decoder_start_token_id).all())
    assert torch.equal(decoder[:, 1:], ids[:, :-1])
    assert torch.equal(batch["decoder_attention_mask"], batch["attention_mask"])
    assert "decoder_input_ids" not in batches[0]  # the batches given are not changed
    with torch.no_grad():
        states = call_model(model, batch).last_hidden_state
    assert states.shape == (*ids.shape, model.config.d_model)
    with pytest.raises(ValueError, match=r"encoder-decoder model \(t5\).*without --eval"):
        check_embeds(model)

    decoder_only, tokenizer = _auto(tiny_model_dir("gpt2"))
    plain = token_batches(tokenizer, ["one", "two"])
    assert with_decoder_inputs(decoder_only, plain) is plain
    check_embeds(decoder_only)


def test_batches_hold_batch_size_sentences_of_at_most_max_length_tokens_on_the_device(tiny_model_dir, sentences):
    from randla.nn.text import token_batches

    _, tokenizer = load_encoder(tiny_model_dir("gpt2"))
    texts = sentences["evaluation"][:12]
    batches = token_batches(tokenizer, texts, batch_size=5, max_length=6, device="meta")
    assert [batch["input_ids"].shape[0] for batch in batches] == [5, 5, 2]
    assert max(batch["input_ids"].shape[1] for batch in batches) == 6
    assert all(t.device.type == "meta" for batch in batches for t in batch.values())
    assert all(t.device.type == "cpu" for t in token_batches(tokenizer, texts[:2])[0].values())


@pytest.mark.parametrize("option", ["batch_size", "max_length"])
@pytest.mark.parametrize("value", [0, 2.5, True])
def test_batch_size_and_max_length_are_positive_ints(tiny_model_dir, option, value):
    from randla.nn.text import count_truncated, token_batches

    _, tokenizer = load_encoder(tiny_model_dir("gpt2"))
    with pytest.raises(ValueError, match=f"`{option}` must be an int >= 1"):
        token_batches(tokenizer, ["one", "two"], **{option: value})
    if option == "max_length":
        with pytest.raises(ValueError, match="`max_length` must be an int >= 1"):
            count_truncated(tokenizer, ["one"], max_length=value)


def test_count_truncated_counts_the_sentences_longer_than_max_length(minilm, sentences):
    from randla.nn.text import count_truncated

    _, tokenizer = minilm  # its [CLS] and [SEP] count as the model reads them
    texts = sentences["evaluation"][:40] + [" ".join(sentences["evaluation"][:30])]
    lengths = [len(tokenizer(text)["input_ids"]) for text in texts]  # whole, untruncated
    for limit in (8, 16, 32, 200):
        assert count_truncated(tokenizer, texts, max_length=limit) == sum(n > limit for n in lengths)
    assert count_truncated(tokenizer, texts, max_length=max(lengths)) == 0
    assert count_truncated(tokenizer, texts, max_length=max(lengths) - 1) == 1


def test_load_encoder_loads_in_the_dtype_asked_for(tiny_model_dir):
    model, _ = load_encoder(tiny_model_dir("llama"), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in load_encoder(tiny_model_dir("llama"))[0].parameters()} == {torch.float32}  # as saved
    with pytest.raises(ValueError, match="`dtype` must be a floating-point torch.dtype"):
        load_encoder(tiny_model_dir("llama"), dtype=torch.int8)
