/*  caption.c - see caption.h. */
#include "caption.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "unicode.h"

/*  Words a captioner uses for whoever or whatever the photo is of, by kind:
 *  a caption's generic word is replaced only when it is of the subject's
 *  kind ("a man walking a dog" with class dog keeps its man). */
static const char *const k_people[] = {"person", "man", "woman", "boy", "girl", "child", "kid", "guy", "lady",
                                       "gentleman", "baby", "toddler", "people", "human"};
static const char *const k_animals[] = {"dog", "puppy", "cat", "kitten", "animal", "pet"};
static const char *const k_things[] = {"product", "object", "item", "thing"};

#define COUNT(a) (sizeof a / sizeof a[0])

static int in_list(const char *w, const char *const *list, size_t n)
{
    for (size_t i = 0; w && i < n; i++)
        if (strcasecmp(w, list[i]) == 0)
            return 1;
    return 0;
}

int df_caption_class_is_person(const char *class_word) { return in_list(class_word, k_people, COUNT(k_people)); }

static const char *token_of(const df_caption_opts *o) { return o && o->token && *o->token ? o->token : "TOK"; }
static const char *class_of(const df_caption_opts *o)
{
    return o && o->class_word && *o->class_word ? o->class_word : "person";
}

/*  text cleaned into a new string. */
static char *clean(const char *raw)
{
    char *text = df_utf8_sanitize(raw); /* invalid bytes become U+FFFD */
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *s = malloc(n + 1);
    if (!s) {
        free(text);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        if (c == ' ' && (k == 0 || s[k - 1] == ' '))
            continue;
        if (c == ',' && k > 0 && (s[k - 1] == ',' || (s[k - 1] == ' ' && k > 1 && s[k - 2] == ',')))
            continue;
        if (c == ',' && k > 0 && s[k - 1] == ' ')
            k--; /* "a , b" -> "a, b" */
        s[k++] = (char)c;
    }
    while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == ',' || (s[k - 1] == '.' && (k < 2 || s[k - 2] != '.'))))
        k--;
    s[k] = '\0';
    free(text);
    return s;
}

static int is_word_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '@' || c == '-'; }

/*  Where word occurs in s as a whole word (case-insensitive), or NULL. */
static const char *find_word(const char *s, const char *word)
{
    const size_t n = strlen(word);
    for (const char *p = s; *p; p++)
        if (strncasecmp(p, word, n) == 0 && (p == s || !is_word_char(p[-1])) && !is_word_char(p[n]))
            return p;
    return NULL;
}

int df_caption_template(const df_caption_opts *o, char **out, df_error_t *err)
{
    size_t n = strlen(token_of(o)) + strlen(class_of(o)) + 16;
    if (!(*out = malloc(n)))
        return df_error_set(err, DF_E_NOMEM, "caption: out of memory");
    snprintf(*out, n, "a photo of %s %s", token_of(o), class_of(o));
    return DF_OK;
}

int df_caption_place(const char *text, const df_caption_opts *o, char **out, df_error_t *err)
{
    *out = NULL;
    char *s = clean(text ? text : "");
    if (!s)
        return df_error_set(err, DF_E_NOMEM, "caption: out of memory");
    if (!*s) {
        free(s);
        return df_caption_template(o, out, err);
    }
    const char *tok = token_of(o), *cls = class_of(o);
    if (find_word(s, tok)) {
        *out = s;
        return DF_OK;
    }
    /* The class word itself, else the earliest generic word of its kind. */
    const char *at = find_word(s, cls);
    size_t len = at ? strlen(cls) : 0;
    const char *const *kind = in_list(cls, k_people, COUNT(k_people))    ? k_people
                              : in_list(cls, k_animals, COUNT(k_animals)) ? k_animals
                                                                           : k_things;
    const size_t nkind = kind == k_people ? COUNT(k_people) : kind == k_animals ? COUNT(k_animals) : COUNT(k_things);
    for (size_t i = 0; !find_word(s, cls) && i < nkind; i++) {
        const char *p = find_word(s, kind[i]);
        if (p && (!at || p < at))
            at = p, len = strlen(kind[i]);
    }
    const size_t need = strlen(s) + strlen(tok) + strlen(cls) + 8;
    char *r = malloc(need);
    if (!r) {
        free(s);
        return df_error_set(err, DF_E_NOMEM, "caption: out of memory");
    }
    if (!at) {
        snprintf(r, need, "%s %s, %s", tok, cls, s);
    } else {
        /* Its article goes too: "a photo of a man" -> "a photo of TOK person". */
        const char *start = at;
        static const char *const articles[] = {"a ", "an ", "the "};
        for (size_t i = 0; i < 3; i++) {
            size_t al = strlen(articles[i]);
            if ((size_t)(at - s) >= al && strncasecmp(at - al, articles[i], al) == 0 &&
                (at - al == s || !is_word_char(at[-(ptrdiff_t)al - 1])))
                start = at - al;
        }
        snprintf(r, need, "%.*s%s %s%s", (int)(start - s), s, tok, cls, at + len);
    }
    free(s);
    *out = r;
    return DF_OK;
}

char *df_caption_sidecar(const char *photo)
{
    static const char *const exts[2] = {".txt", ".caption"};
    const char *dot = strrchr(photo, '.'), *slash = strrchr(photo, '/');
    const size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - photo) : strlen(photo);
    for (int i = 0; i < 2; i++) {
        char path[4200];
        if ((size_t)snprintf(path, sizeof path, "%.*s%s", (int)stem, photo, exts[i]) >= sizeof path)
            return NULL;
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char buf[2048];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        for (char *p = buf; *p; p++) /* one line: newlines become spaces */
            if (*p == '\n' || *p == '\r' || *p == '\t')
                *p = ' ';
        char *s = buf;
        while (*s == ' ')
            s++;
        size_t len = strlen(s);
        while (len && s[len - 1] == ' ')
            s[--len] = '\0';
        if (len) /* a Latin-1 file or a cut at the buffer's end: made valid UTF-8 */
            return df_utf8_sanitize(s);
    }
    return NULL;
}
