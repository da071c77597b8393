"""The WXBizMsgCrypt scheme: published known-answer vectors, then properties over any input."""

import base64
import contextlib
import hashlib
import string
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from scrm.wecom.crypto import (
    BLOCK_SIZE,
    CryptoError,
    MessageCrypto,
    ReceiveIdError,
    SignatureError,
    aes_key_is_valid,
    pkcs7_pad,
    pkcs7_unpad,
    signature,
)

# wechatpy tests/test_crypto.py (wechatpy.work.crypto.WeChatCrypto), the vector WeCom's own
# sample code uses too. The key ends in "R": its last 2 bits are not part of the 32-byte key.
TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
CORP_ID = "wx49f0ab532d5d035a"
ECHO_TIMESTAMP, ECHO_NONCE = "1411443780", "437374425"
ECHO_SIGNATURE = "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96"
ECHO_STR = (
    "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
)
ECHO_PLAIN = b"5927782489442352469"

# wechatpy test_encrypt_message: random prefix fixed to "1234567890123456".
REPLY_TIMESTAMP, REPLY_NONCE = "1411525903", "461056294"
REPLY = b"""<xml>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[test]]></Content>
<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>
<ToUserName><![CDATA[messense]]></ToUserName>
<AgentID>1</AgentID>
<CreateTime>1411525903</CreateTime>
</xml>"""
REPLY_ENCRYPT = (
    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBq"
    "GsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nF"
    "hHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX"
    "05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD"
    "3WeK2XeFYFMNMpatF9XiKzHo3"
)
REPLY_SIGNATURE = "407518b7649e86ef23978113f92d27afa9296533"

# wechatpy test_decrypt_message: a message WeCom encrypted.
INBOUND_SIGNATURE = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
INBOUND_ENCRYPT = (
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrs"
    "TyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+"
    "BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7"
    "vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dS"
    "hyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
)

PROPERTIES = settings(max_examples=200, deadline=None)
OTHER_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
# Query parameters reach us already decoded by Django, never with lone surrogates.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=64)
receive_ids = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
aes_keys = st.text(string.ascii_letters + string.digits, min_size=43, max_size=43)


def _crypto(receive_id: str = CORP_ID, key: str = AES_KEY) -> MessageCrypto:
    return MessageCrypto(TOKEN, key, receive_id)


def _raw_decrypt(encrypt: str, key: str = AES_KEY) -> bytes:
    """AES-256-CBC written out from the spec (key = b64(EncodingAESKey + "="), IV = key[:16])."""
    aes_key = base64.b64decode(key + "=")
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(aes_key[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()


def _raw_encrypt(plain: bytes, key: str = AES_KEY) -> str:
    aes_key = base64.b64decode(key + "=")
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(aes_key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


# -- known answers -------------------------------------------------------------------------------


def test_published_echostr_vector_verifies_and_decrypts_to_the_published_plaintext():
    crypto = _crypto()
    assert crypto.sign(ECHO_TIMESTAMP, ECHO_NONCE, ECHO_STR) == ECHO_SIGNATURE
    assert signature(TOKEN, ECHO_TIMESTAMP, ECHO_NONCE, ECHO_STR) == ECHO_SIGNATURE
    plain = crypto.verify_and_decrypt(ECHO_SIGNATURE, ECHO_TIMESTAMP, ECHO_NONCE, ECHO_STR)
    assert plain == ECHO_PLAIN


def test_published_echostr_buffer_has_the_documented_layout_and_pad_of_seven():
    buffer = _raw_decrypt(ECHO_STR)
    assert len(buffer) % BLOCK_SIZE == 0
    assert buffer[-7:] == b"\x07" * 7
    (length,) = struct.unpack(">I", buffer[16:20])
    assert buffer[20 : 20 + length] == ECHO_PLAIN
    assert buffer[20 + length : -7] == CORP_ID.encode()


def test_published_echostr_with_a_changed_nonce_is_a_signature_error():
    with pytest.raises(SignatureError) as info:
        _crypto().verify_and_decrypt(ECHO_SIGNATURE, ECHO_TIMESTAMP, "437374424", ECHO_STR)
    assert info.value.code == -40001


def test_published_reply_vector_encrypts_byte_for_byte_with_a_fixed_random_prefix():
    crypto = _crypto()
    encrypt = crypto.encrypt(REPLY, random_prefix=b"1234567890123456")
    assert encrypt == REPLY_ENCRYPT
    assert crypto.sign(REPLY_TIMESTAMP, REPLY_NONCE, encrypt) == REPLY_SIGNATURE


def test_known_answer_computed_from_the_spec_matches_encrypt():
    prefix, message = bytes(range(16)), "客户已添加".encode()
    plain = prefix + struct.pack(">I", len(message)) + message + b"ww_receiver"
    pad = 32 - len(plain) % 32
    expected = _raw_encrypt(plain + bytes([pad]) * pad)
    crypto = _crypto(receive_id="ww_receiver")
    assert crypto.encrypt(message, random_prefix=prefix) == expected


def test_published_inbound_message_verifies_and_decrypts():
    crypto = _crypto()
    message = crypto.verify_and_decrypt(
        INBOUND_SIGNATURE, REPLY_TIMESTAMP, REPLY_NONCE, INBOUND_ENCRYPT
    )
    assert b"<Content><![CDATA[test]]></Content>" in message
    assert b"<FromUserName><![CDATA[messense]]></FromUserName>" in message


def test_signature_is_sha1_of_the_four_strings_sorted_and_concatenated():
    expected = hashlib.sha1(b"abcd", usedforsecurity=False).hexdigest()
    assert signature("b", "a", "d", "c") == expected


def test_verify_accepts_an_upper_case_signature():
    _crypto().verify(ECHO_SIGNATURE.upper(), ECHO_TIMESTAMP, ECHO_NONCE, ECHO_STR)


@pytest.mark.parametrize("bad", ["", "0" * 40, ECHO_SIGNATURE[:-1], "签名" * 20, "dd6b9c95\x00"])
def test_verify_refuses_wrong_or_non_ascii_signatures_with_a_signature_error(bad):
    with pytest.raises(SignatureError):
        _crypto().verify(bad, ECHO_TIMESTAMP, ECHO_NONCE, ECHO_STR)


def test_message_crypto_refuses_an_invalid_key():
    with pytest.raises(CryptoError) as info:
        MessageCrypto(TOKEN, AES_KEY[:42], CORP_ID)
    assert info.value.code == -40004


def test_encrypt_refuses_a_random_prefix_that_is_not_16_bytes():
    with pytest.raises(CryptoError):
        _crypto().encrypt(b"x", random_prefix=b"short")


def test_envelope_builds_the_post_body_wecom_sends_with_a_matching_signature():
    crypto = _crypto()
    body, msg_signature = crypto.envelope(b"<xml/>", timestamp="1", nonce="2")
    encrypt = body.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    assert f"<ToUserName><![CDATA[{CORP_ID}]]></ToUserName>" in body
    assert crypto.verify_and_decrypt(msg_signature, "1", "2", encrypt) == b"<xml/>"


# -- properties ----------------------------------------------------------------------------------


@PROPERTIES
@given(message=st.binary(max_size=600), receive_id=receive_ids, key=aes_keys)
def test_encrypt_then_decrypt_returns_the_message_for_any_bytes_receive_id_and_key(
    message, receive_id, key
):
    crypto = MessageCrypto(TOKEN, key, receive_id)
    encrypt = crypto.encrypt(message)
    assert len(base64.b64decode(encrypt)) % BLOCK_SIZE == 0
    assert crypto.decrypt(encrypt) == message


@PROPERTIES
@given(data=st.binary(max_size=200))
def test_padding_reaches_a_multiple_of_32_with_a_pad_of_1_to_32_and_unpads_back(data):
    padded = pkcs7_pad(data)
    pad = padded[-1]
    assert len(padded) % 32 == 0
    assert 1 <= pad <= 32
    assert padded[-pad:] == bytes([pad]) * pad
    assert len(padded) - len(data) == pad
    assert pkcs7_unpad(padded) == data


@pytest.mark.parametrize(
    "buffer",
    [b"", b"x" * 31 + b"\x00", b"x" * 31 + b"\x21", b"x" * 29 + b"\x01\x02\x03", b"\x05" * 4],
)
def test_unpad_refuses_an_impossible_pad(buffer):
    with pytest.raises(CryptoError):
        pkcs7_unpad(buffer)


@PROPERTIES
@given(
    message=st.binary(max_size=200),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
    timestamp=st.integers(min_value=0, max_value=2**32).map(str),
    nonce=st.text(string.digits, min_size=1, max_size=10),
)
def test_any_tampered_ciphertext_fails_verification_and_never_raises_anything_else(
    message, position, flip, timestamp, nonce
):
    crypto = _crypto()
    encrypt = crypto.encrypt(message)
    msg_signature = crypto.sign(timestamp, nonce, encrypt)
    raw = bytearray(base64.b64decode(encrypt))
    raw[position % len(raw)] ^= flip
    tampered = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureError):
        crypto.verify_and_decrypt(msg_signature, timestamp, nonce, tampered)
    # CBC alone has no integrity (the signature is what protects it), so a tampered buffer may
    # decrypt to something; it must never blow up with anything but CryptoError.
    with contextlib.suppress(CryptoError):
        crypto.decrypt(tampered)


@PROPERTIES
@given(message=st.binary(max_size=200), sender=receive_ids, receiver=receive_ids)
def test_a_message_for_another_receive_id_is_a_receive_id_error(message, sender, receiver):
    encrypt = _crypto(receive_id=sender).encrypt(message)
    if sender == receiver:
        assert _crypto(receive_id=receiver).decrypt(encrypt) == message
    else:
        with pytest.raises(ReceiveIdError) as info:
            _crypto(receive_id=receiver).decrypt(encrypt)
        assert info.value.code == -40005


@PROPERTIES
@given(message=st.binary(max_size=200), key=aes_keys)
def test_a_message_decrypted_with_another_key_raises_crypto_error(message, key):
    encrypt = _crypto(key=AES_KEY).encrypt(message)
    if base64.b64decode(key + "=") == base64.b64decode(AES_KEY + "="):
        return
    with pytest.raises(CryptoError):
        _crypto(key=key).decrypt(encrypt)


def test_a_wrong_key_is_refused_for_the_published_vector():
    with pytest.raises(CryptoError):
        _crypto(key=OTHER_KEY).decrypt(ECHO_STR)


@PROPERTIES
@given(encrypt=st.text(max_size=300))
def test_arbitrary_text_as_ciphertext_raises_only_crypto_error(encrypt):
    with contextlib.suppress(CryptoError):
        _crypto().decrypt(encrypt)


@pytest.mark.parametrize(
    ("encrypt", "code"),
    [
        ("not base64!", -40010),
        (ECHO_STR[:-1], -40010),
        (ECHO_STR.replace("+", " "), -40010),
        ("密文", -40010),
        ("", -40007),
        (base64.b64encode(b"x" * 15).decode(), -40007),
        (base64.b64encode(base64.b64decode(ECHO_STR)[:-16]).decode(), -40008),
    ],
)
def test_bad_base64_or_truncated_buffers_raise_crypto_error_with_the_library_code(encrypt, code):
    with pytest.raises(CryptoError) as info:
        _crypto().decrypt(encrypt)
    assert info.value.code == code


@pytest.mark.parametrize(
    "plain",
    [
        b"0123456789abcdef" + b"\x00\x00\x00",  # shorter than prefix + length
        b"0123456789abcdef" + struct.pack(">I", 1000) + b"short",  # length beyond the buffer
    ],
)
def test_a_buffer_that_decrypts_but_is_malformed_raises_crypto_error(plain):
    pad = 32 - len(plain) % 32
    with pytest.raises(CryptoError) as info:
        _crypto().decrypt(_raw_encrypt(plain + bytes([pad]) * pad))
    assert info.value.code == -40008


@PROPERTIES
@given(parts=st.lists(texts, min_size=4, max_size=4), order=st.permutations(range(4)))
def test_signature_does_not_depend_on_the_order_of_its_arguments(parts, order):
    shuffled = [parts[i] for i in order]
    assert signature(*parts) == signature(*shuffled)
    assert len(signature(*parts)) == 40


@PROPERTIES
@given(msg_signature=texts, timestamp=texts, nonce=texts)
def test_verify_of_any_text_signature_raises_only_signature_error(msg_signature, timestamp, nonce):
    crypto = _crypto()
    if msg_signature.lower() == crypto.sign(timestamp, nonce, ECHO_STR):
        return
    with pytest.raises(SignatureError):
        crypto.verify(msg_signature, timestamp, nonce, ECHO_STR)


@PROPERTIES
@given(key=aes_keys)
def test_every_43_letter_or_digit_key_is_valid_and_gives_a_32_byte_key(key):
    assert aes_key_is_valid(key)
    assert len(MessageCrypto(TOKEN, key, CORP_ID).key) == 32


@PROPERTIES
@given(
    key=st.text(string.ascii_letters + string.digits, max_size=60).filter(lambda k: len(k) != 43)
)
def test_keys_of_any_other_length_are_invalid(key):
    assert not aes_key_is_valid(key)


@PROPERTIES
@given(
    key=aes_keys,
    position=st.integers(min_value=0, max_value=42),
    char=st.characters().filter(lambda c: c not in string.ascii_letters + string.digits),
)
def test_43_character_keys_with_any_other_character_are_invalid(key, position, char):
    assert not aes_key_is_valid(key[:position] + char + key[position + 1 :])


@pytest.mark.parametrize(
    "key", ["", None, AES_KEY + "\n", AES_KEY + "=", " " + AES_KEY[1:], AES_KEY[:42] + "\n"]
)
def test_aes_key_is_valid_refuses_near_misses(key):
    assert not aes_key_is_valid(key)
