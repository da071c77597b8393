"""WeCom callback message crypto (the WXBizMsgCrypt scheme, WeCom doc 91144).

AES-256-CBC with key = base64(EncodingAESKey + "=") and IV = key[:16]; the plaintext is
random(16) + len(msg) as 4 bytes big-endian + msg + receiveid, PKCS#7-padded to 32 bytes.
The signature is sha1 over the lexicographically sorted [token, timestamp, nonce, encrypt].
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_SIZE = 32
AES_KEY_PATTERN = re.compile(r"^[A-Za-z0-9]{43}$")


class CryptoError(Exception):
    """A callback that cannot be trusted; `code` follows the official library's error codes."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SignatureError(CryptoError):
    def __init__(self) -> None:
        super().__init__(-40001, "signature mismatch")


class ReceiveIdError(CryptoError):
    def __init__(self) -> None:
        super().__init__(-40005, "receiveid mismatch")


def aes_key_is_valid(encoding_aes_key: str) -> bool:
    """43 letters or digits that decode to a 32-byte key."""
    if not AES_KEY_PATTERN.fullmatch(encoding_aes_key or ""):  # "$" would allow a trailing \n
        return False
    try:
        return len(base64.b64decode(encoding_aes_key + "=")) == 32
    except (binascii.Error, ValueError):
        return False


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    parts = sorted([token, str(timestamp), str(nonce), encrypt])
    return hashlib.sha1("".join(parts).encode(), usedforsecurity=False).hexdigest()


def pkcs7_pad(data: bytes) -> bytes:
    pad = BLOCK_SIZE - len(data) % BLOCK_SIZE
    return data + bytes([pad]) * pad


def pkcs7_unpad(data: bytes) -> bytes:
    if not data:
        raise CryptoError(-40008, "empty buffer")
    pad = data[-1]
    if pad < 1 or pad > BLOCK_SIZE or data[-pad:] != bytes([pad]) * pad:
        raise CryptoError(-40008, "bad padding")
    return data[:-pad]


class MessageCrypto:
    """Encrypt, decrypt and sign messages for one (token, EncodingAESKey, receiveid)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if not aes_key_is_valid(encoding_aes_key):
            raise CryptoError(-40004, "EncodingAESKey must be 43 letters or digits")
        self.token = token
        self.key = base64.b64decode(encoding_aes_key + "=")
        self.receive_id = receive_id
        # Built once: every message of this corp uses the same key and IV (key[:16]); each
        # encryptor() or decryptor() is a fresh context, so one Cipher serves all threads.
        self._cipher = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        return signature(self.token, timestamp, nonce, encrypt)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        expected = self.sign(timestamp, nonce, encrypt)
        # As bytes: compare_digest raises TypeError for a non-ASCII str, and the query is untrusted.
        if not hmac.compare_digest(expected.encode(), (msg_signature or "").lower().encode()):
            raise SignatureError()

    def encrypt(self, message: bytes, *, random_prefix: bytes | None = None) -> str:
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        if len(prefix) != 16:
            raise CryptoError(-40006, "random prefix must be 16 bytes")
        plain = prefix + struct.pack(">I", len(message)) + message + self.receive_id.encode()
        encryptor = self._cipher.encryptor()
        cipher_text = encryptor.update(pkcs7_pad(plain)) + encryptor.finalize()
        return base64.b64encode(cipher_text).decode()

    def decrypt(self, encrypt: str) -> bytes:
        """Return the message; raise CryptoError if the buffer or its receiveid is wrong."""
        try:
            cipher_text = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError(-40010, "base64 decode failed") from exc
        if not cipher_text or len(cipher_text) % 16:
            raise CryptoError(-40007, "ciphertext is not a whole number of AES blocks")
        decryptor = self._cipher.decryptor()
        plain = pkcs7_unpad(decryptor.update(cipher_text) + decryptor.finalize())
        if len(plain) < 20:
            raise CryptoError(-40008, "buffer too short")
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise CryptoError(-40008, "message length out of range")
        message, receive_id = plain[20 : 20 + length], plain[20 + length :]
        if not hmac.compare_digest(receive_id, self.receive_id.encode()):
            raise ReceiveIdError()
        return message

    def verify_and_decrypt(
        self, msg_signature: str, timestamp: str, nonce: str, encrypt: str
    ) -> bytes:
        self.verify(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)

    def envelope(self, message: bytes, *, timestamp: str, nonce: str) -> tuple[str, str]:
        """Build the POST body WeCom sends (XML with Encrypt) and its msg_signature."""
        encrypt = self.encrypt(message)
        body = (
            f"<xml><ToUserName><![CDATA[{self.receive_id}]]></ToUserName>"
            f"<AgentID><![CDATA[]]></AgentID><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        return body, self.sign(timestamp, nonce, encrypt)
