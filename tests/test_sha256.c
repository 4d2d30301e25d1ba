/* SHA-256 against the FIPS 180-2 example digests. */
#include "gq_error.h"
#include "gq_sha256.h"
#include "gq_test.h"

#include <string.h>

int main(void) {
    char hex[65];
    gq_sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    gq_sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    gq_sha256_hex(two, strlen(two), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    /* one million 'a', fed in uneven pieces to exercise the block buffer */
    static char a[1000000];
    memset(a, 'a', sizeof a);
    gq_sha256 h;
    uint8_t d[32];
    gq_sha256_init(&h);
    for (size_t off = 0, step = 1; off < sizeof a; off += step, step = step * 3 % 1000 + 1)
        gq_sha256_update(&h, a + off, off + step > sizeof a ? sizeof a - off : step);
    gq_sha256_final(&h, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    return gq_test_finish("test_sha256");
}
