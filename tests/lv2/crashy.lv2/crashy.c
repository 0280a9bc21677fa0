/* A sine oscillator that misbehaves on request, for modsynth's crash tests.
 *
 * `crash`: segfaults in run() in the process whose pid it names (so a test can
 * crash a primary and not its lockstep standby), or in every process at -1.
 * `hang`: spins forever in run() in the process whose pid it names (-1: in
 * every process), never returning to the host: a hung plugin.
 * `nan`: writes NaN instead of the sine while on (and into `peak`). The phase is
 * the plugin's own state: a standby only continues it seamlessly if it ran in
 * lockstep. `peak` (a control output, a meter): the largest |sample| of the last
 * run.
 * `gain` (LV2 state, no port shows it): the sine's level, 1 at instantiation.
 * `set_gain` sets it when the control changes between two runs (its value at the
 * first run sets nothing), so after a free and a load only the state can bring
 * the level back: the state round trip is measurable as the output level. */
#include <lv2/atom/atom.h>
#include <lv2/core/lv2.h>
#include <lv2/state/state.h>
#include <lv2/urid/urid.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
	float *out;
	const float *freq;
	const float *crash;
	const float *nan;
	float *peak;
	const float *set_gain;
	float gain;
	float last_set_gain; /* NAN until the first run */
	LV2_URID gain_key;
	LV2_URID atom_float;
	const float *hang;
	double phase;
	double rate;
	float pid;
} Crashy;

static LV2_Handle instantiate(const LV2_Descriptor *d, double rate, const char *path,
                              const LV2_Feature *const *features) {
	const LV2_URID_Map *map = NULL;
	for (int i = 0; features && features[i]; i++)
		if (!strcmp(features[i]->URI, LV2_URID__map))
			map = features[i]->data;
	if (!map)
		return NULL; /* required in crashy.ttl */
	Crashy *c = calloc(1, sizeof(Crashy));
	if (c) {
		c->rate = rate;
		c->pid = (float)getpid();
		c->gain = 1.0f;
		c->last_set_gain = NAN;
		c->gain_key = map->map(map->handle, "urn:modsynth:test:crashy#gain");
		c->atom_float = map->map(map->handle, LV2_ATOM__Float);
	}
	return c;
}

static void connect_port(LV2_Handle h, uint32_t port, void *data) {
	Crashy *c = h;
	switch (port) {
	case 0: c->out = data; break;
	case 1: c->freq = data; break;
	case 2: c->crash = data; break;
	case 3: c->nan = data; break;
	case 4: c->peak = data; break;
	case 5: c->set_gain = data; break;
	case 6: c->hang = data; break;
	}
}

static void run(LV2_Handle h, uint32_t n) {
	Crashy *c = h;
	float crash = *c->crash;
	if (crash == -1.0f || (crash > 0.0f && crash == c->pid)) {
		volatile int *nowhere = NULL;
		*nowhere = 1; /* SIGSEGV */
	}
	if (c->set_gain) {
		float g = *c->set_gain;
		if (!isnan(c->last_set_gain) && g != c->last_set_gain)
			c->gain = g;
		c->last_set_gain = g;
	}
	float hang = c->hang ? *c->hang : 0.0f;
	if (hang == -1.0f || (hang > 0.0f && hang == c->pid)) {
		/* A volatile counter: a loop the compiler may not assume to end or remove. */
		for (volatile unsigned long spin = 0;; spin++) {
		}
	}
	double step = *c->freq / c->rate;
	float peak = 0.0f;
	for (uint32_t i = 0; i < n; i++) {
		float v = (float)(0.5 * c->gain * sin(2.0 * M_PI * c->phase));
		c->out[i] = *c->nan >= 0.5f ? NAN : v;
		if (fabsf(v) > peak)
			peak = fabsf(v);
		c->phase += step;
		if (c->phase >= 1.0)
			c->phase -= 1.0;
	}
	if (c->peak)
		*c->peak = *c->nan >= 0.5f ? NAN : peak;
}

static void cleanup(LV2_Handle h) { free(h); }

static LV2_State_Status save(LV2_Handle h, LV2_State_Store_Function store,
                             LV2_State_Handle sh, uint32_t flags,
                             const LV2_Feature *const *features) {
	Crashy *c = h;
	float gain = c->gain; /* one aligned word: a run() meanwhile cannot tear it */
	return store(sh, c->gain_key, &gain, sizeof(gain), c->atom_float,
	             LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
}

static LV2_State_Status restore(LV2_Handle h, LV2_State_Retrieve_Function retrieve,
                                LV2_State_Handle sh, uint32_t flags,
                                const LV2_Feature *const *features) {
	Crashy *c = h;
	size_t size = 0;
	uint32_t type = 0, vflags = 0;
	const float *gain = retrieve(sh, c->gain_key, &size, &type, &vflags);
	if (!gain || size != sizeof(float) || type != c->atom_float)
		return LV2_STATE_ERR_NO_PROPERTY;
	if (!isfinite(*gain) || *gain < 0.0f || *gain > 1.0f)
		return LV2_STATE_ERR_BAD_TYPE;
	c->gain = *gain;
	return LV2_STATE_SUCCESS;
}

static const void *extension_data(const char *uri) {
	static const LV2_State_Interface state = {save, restore};
	return strcmp(uri, LV2_STATE__interface) ? NULL : &state;
}

static const LV2_Descriptor descriptor = {
	"urn:modsynth:test:crashy", instantiate, connect_port, NULL, run, NULL, cleanup,
	extension_data,
};

LV2_SYMBOL_EXPORT const LV2_Descriptor *lv2_descriptor(uint32_t index) {
	return index == 0 ? &descriptor : NULL;
}
