/* A sine oscillator that misbehaves on request, for modsynth's crash tests.
 *
 * `crash`: segfaults in run() in the process whose pid it names (so a test can
 * crash a primary and not its lockstep standby), or in every process at -1.
 * `hang`: spins forever in run() in the process whose pid it names (-1: in
 * every process), never returning to the host: a hung plugin.
 * `nan`: writes NaN instead of the sine while on (and into `peak`). The phase is
 * the plugin's own state: a standby only continues it seamlessly if it ran in
 * lockstep. `peak` (a control output, a meter): the largest |sample| of the last
 * run. */
#include <lv2/core/lv2.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
	float *out;
	const float *freq;
	const float *crash;
	const float *nan;
	float *peak;
	const float *hang;
	double phase;
	double rate;
	float pid;
} Crashy;

static LV2_Handle instantiate(const LV2_Descriptor *d, double rate, const char *path,
                              const LV2_Feature *const *features) {
	Crashy *c = calloc(1, sizeof(Crashy));
	if (c) {
		c->rate = rate;
		c->pid = (float)getpid();
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
	case 5: c->hang = data; break;
	}
}

static void run(LV2_Handle h, uint32_t n) {
	Crashy *c = h;
	float crash = *c->crash;
	if (crash == -1.0f || (crash > 0.0f && crash == c->pid)) {
		volatile int *nowhere = NULL;
		*nowhere = 1; /* SIGSEGV */
	}
	float hang = *c->hang;
	if (hang == -1.0f || (hang > 0.0f && hang == c->pid)) {
		/* A volatile counter: a loop the compiler may not assume to end or remove. */
		for (volatile unsigned long spin = 0;; spin++) {
		}
	}
	double step = *c->freq / c->rate;
	float peak = 0.0f;
	for (uint32_t i = 0; i < n; i++) {
		float v = (float)(0.5 * sin(2.0 * M_PI * c->phase));
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

static const LV2_Descriptor descriptor = {
	"urn:modsynth:test:crashy", instantiate, connect_port, NULL, run, NULL, cleanup, NULL,
};

LV2_SYMBOL_EXPORT const LV2_Descriptor *lv2_descriptor(uint32_t index) {
	return index == 0 ? &descriptor : NULL;
}
