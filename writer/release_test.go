package writer

import "testing"

// The zero Release lets its file go at once; another holds it until its
// Verdict is in, and the first Verdict stands.
func TestRelease(t *testing.T) {
	var none Release
	select {
	case <-none.Decided():
	default:
		t.Error("the zero Release is not decided")
	}
	if v := none.Wait(); v != Deletable {
		t.Errorf("the zero Release: %v, want Deletable", v)
	}
	for _, tc := range []struct {
		verdicts []Verdict
		want     Verdict
	}{
		{[]Verdict{Deletable}, Deletable},
		{[]Verdict{Keep}, Keep},
		{[]Verdict{Keep, Deletable}, Keep},
	} {
		release, decide := NewRelease()
		select {
		case <-release.Decided():
			t.Fatal("decided before a Verdict")
		default:
		}
		for _, v := range tc.verdicts {
			decide(v)
		}
		for range 2 {
			if got := release.Wait(); got != tc.want {
				t.Errorf("after %v: %v, want %v", tc.verdicts, got, tc.want)
			}
		}
	}
}
